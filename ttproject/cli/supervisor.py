"""The child processes of one `ttstack` server command, started and stopped together.

A child spawned with `restart=True` (a role's worker) is started again when it dies, after a backoff that
doubles from 1 s up to 30 s and falls back to 1 s once a run lasted a minute; the other children keep
serving meanwhile. Any other child exiting stops them all.

On Linux the supervisor is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): when a child is killed, its own
children (a worker's job cluster and fleet loop) are handed to the supervisor instead of init, so they are
stopped before the replacement starts rather than living on unsupervised. Only strays of our own process
group are stopped; processes that detached into a session of their own (a `tart run` of localvm) are left
running and only reaped when they end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a run this long resets the backoff
STRAY_GRACE = 10.0  # SIGTERM, then SIGKILL after this long
REAP_EVERY = 5.0  # look for exited strays this often (more often while a restart is pending)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (from /proc; empty where there is no /proc)."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def describe_exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict
    restart: bool
    proc: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = 0.0
    due: float | None = None  # when a restart is due (None: running or not restartable)


@dataclass
class Strays:
    """Orphans of a dead child, handed to us as subreaper: stopped with SIGTERM, then SIGKILL."""

    signalled: dict[int, float] = field(default_factory=dict)  # pid -> when SIGTERM was sent

    def collect(self, ours: set[int]) -> None:
        """Reap exited strays; signal the live ones of our process group; SIGKILL those past the grace."""
        now = time.monotonic()
        for pid in child_pids(os.getpid()):
            if pid in ours:
                continue
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    self.signalled.pop(pid, None)
                    continue
            try:
                if os.getpgid(pid) != os.getpgrp():
                    continue  # detached on purpose: not ours to stop
                if pid not in self.signalled:
                    os.kill(pid, signal.SIGTERM)
                    self.signalled[pid] = now
                elif now - self.signalled[pid] > STRAY_GRACE:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                self.signalled.pop(pid, None)
        live = set(child_pids(os.getpid()))
        self.signalled = {pid: t for pid, t in self.signalled.items() if pid in live}

    @property
    def pending(self) -> bool:
        return bool(self.signalled)


class Supervisor:
    def __init__(self):
        self.children: list[Child] = []
        self.stopping = False
        self.strays = Strays()
        self.subreaper = become_subreaper()

    def spawn(self, name: str, argv: list[str], env: dict | None = None, *, restart: bool = False):
        child = Child(name, argv, env or os.environ.copy(), restart)
        self.children.append(child)
        self._start(child)
        return child.proc

    def _start(self, child: Child):
        child.proc = subprocess.Popen(child.argv, env=child.env)
        child.started, child.due = time.monotonic(), None

    def _ours(self) -> set[int]:
        return {c.proc.pid for c in self.children if c.proc is not None}

    def stop(self, *_):
        if self.stopping:
            return
        self.stopping = True
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + 15
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self._stop_strays(deadline)

    def _stop_strays(self, deadline: float):
        if not self.subreaper:
            return
        self.strays.collect(self._ours())
        while self.strays.pending and time.monotonic() < deadline + STRAY_GRACE:
            time.sleep(0.2)
            self.strays.collect(self._ours())

    def _child_exited(self, child: Child) -> int | None:
        """Handle a child that exited: schedule its restart, or return the exit code to stop with."""
        code = child.proc.returncode
        if not child.restart:
            print(f"ttstack: {child.name} {describe_exit(code)}", file=sys.stderr, flush=True)
            return code or 1
        ran = time.monotonic() - child.started
        child.backoff = BACKOFF_FIRST if ran >= STABLE_AFTER or not child.backoff else \
            min(child.backoff * 2, BACKOFF_MAX)
        child.due = time.monotonic() + child.backoff
        child.proc = None
        print(f"ttstack: {child.name} {describe_exit(code)}; starting it again in {child.backoff:g} s",
              file=sys.stderr, flush=True)
        return None

    def wait(self, every: float = 0, tick=None) -> int:
        """Until a child that is not restarted exits or we are signalled; `tick()` every `every` s."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        next_tick = time.monotonic() + every
        next_reap = time.monotonic() + REAP_EVERY
        try:
            while not self.stopping:
                for child in self.children:
                    if child.proc is not None and child.proc.poll() is not None:
                        code = self._child_exited(child)
                        if code is not None:
                            self.stop()
                            return code
                restarting = any(child.due is not None for child in self.children)
                if self.subreaper and (restarting or self.strays.pending or time.monotonic() >= next_reap):
                    self.strays.collect(self._ours())
                    next_reap = time.monotonic() + REAP_EVERY
                for child in self.children:
                    if child.due is not None and time.monotonic() >= child.due and not self.strays.pending \
                            and not self.stopping:
                        self._start(child)
                if tick and time.monotonic() >= next_tick:
                    tick()
                    next_tick = time.monotonic() + every
                time.sleep(0.2)
        finally:
            self.stop()
        return 0

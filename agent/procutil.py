"""Host tools and the processes they start: run a tool (argument lists, never a shell), start one detached,
follow and stop it. Used by the host-tool engines (firecracker, bhyve, jail) and the zvol storage."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from ttproject import procutil


def run_tool(argv: list[str], *, error: type[Exception], timeout: float = 60, check: bool = True,
             input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run a host tool; on failure raise `error` naming the tool and its message."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise error(f"{os.path.basename(argv[0])} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{os.path.basename(argv[0])} did not finish within {timeout:g} s") from exc
    if check and done.returncode != 0:
        raise error(tool_failure(argv, done))
    return done


def tool_failure(argv: list[str], done: subprocess.CompletedProcess) -> str:
    message = (done.stderr or "").strip() or (done.stdout or "").strip() or "no output"
    return f"{os.path.basename(argv[0])} {' '.join(argv[1:3])} failed (exit {done.returncode}): {message}"


# Detached children started by this process, so they can be reaped (no zombies counted as alive).
_children: dict[int, subprocess.Popen] = {}


def spawn_detached(argv: list[str], log_path: Path, env: dict | None = None, cwd: str | None = None) -> int:
    """Start `argv` in its own session, output appended to `log_path`; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env, cwd=cwd)
    _children[proc.pid] = proc
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    return procutil.pid_alive(pid, zombie_is_dead=True)  # a zombie left by an earlier agent process is gone


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Ask `condition()` every `interval` seconds until it is true (True) or `timeout` has passed (False)."""
    asking = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval),
                      retry=retry_if_result(lambda ok: not ok))
    try:
        return asking(condition)
    except RetryError:
        return False


def wait_pid_exit(pid: int | None, timeout: float) -> bool:
    """True once the process is gone, False if it still runs after `timeout` seconds."""
    return wait_until(lambda: not pid_alive(pid), timeout)


def kill_pid(pid: int | None, sig: int = 9, timeout: float = 10) -> None:
    """Send `sig` to the process (its whole session when it leads one) and wait for it to go."""
    if not pid_alive(pid):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return
    wait_pid_exit(pid, timeout)

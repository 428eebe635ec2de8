"""The one place that runs the `tart` CLI: argument lists, per-command timeouts, JSON parsing.

Errors: a missing VM (`tart` exits 2 with `the specified VM "NAME" does not exist`) raises NotFound; a
command that overruns its timeout raises TartTimeout; a missing binary raises TartMissing; any other
non-zero exit raises TartError carrying the command, exit code and stderr.
"""

import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tenacity

from . import conf


class TartError(Exception):
    def __init__(self, message: str, *, argv: list[str] | None = None, exit_code: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.argv, self.exit_code, self.stderr = argv, exit_code, stderr


class NotFound(TartError):
    pass


class TartTimeout(TartError):
    pass


class TartMissing(TartError):
    pass


def argv(*args: str) -> list[str]:
    return [conf.TART_BIN, *args]


def timeout(cmd: str) -> float:
    return conf.tart_timeout(cmd)


def error_for(cmd: list[str], code: int, stderr: str) -> TartError:
    text = stderr.strip()
    message = text.splitlines()[-1] if text else f"{' '.join(cmd[:2])} exited with code {code}"
    kind = NotFound if code == 2 and "does not exist" in text else TartError
    return kind(message, argv=cmd, exit_code=code, stderr=stderr)


def _missing(cmd: list[str]) -> TartMissing:
    return TartMissing(f"the tart binary {cmd[0]!r} was not found (set TTSTACK_TART_BIN)", argv=cmd)


def run(args: list[str], cmd_timeout: float) -> str:
    """Run `tart ARGS`, return its stdout; raise on failure."""
    cmd = argv(*args)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=cmd_timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise _missing(cmd) from None
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise TartTimeout(f"tart {args[0]} timed out after {cmd_timeout:g} s", argv=cmd, stderr=stderr) from None
    if done.returncode != 0:
        raise error_for(cmd, done.returncode, done.stderr)
    return done.stdout


def _json(args: list[str], cmd_timeout: float):
    out = run(args, cmd_timeout)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise TartError(f"tart {args[0]} printed invalid JSON: {exc}", argv=argv(*args)) from None


def list_vms() -> list[dict]:
    """`tart list --format json`: Source, Name, Disk, Size, Accessed, Running, State per VM."""
    data = _json(["list", "--format", "json"], timeout("list"))
    if not isinstance(data, list):
        raise TartError("tart list did not print a JSON list", argv=argv("list"))
    return data


def get(name: str) -> dict:
    """`tart get NAME --format json`: OS, CPU, Memory (MB), Disk (GB), DiskFormat, Size, Display, Running, State."""
    data = _json(["get", name, "--format", "json"], timeout("get"))
    if not isinstance(data, dict):
        raise TartError("tart get did not print a JSON object", argv=argv("get", name))
    return data


def ip(name: str) -> str | None:
    """The VM's IP address, or None while it has none (`tart ip` exits 1 `no IP address found`).
    Raises NotFound, TartTimeout, TartError otherwise."""
    try:
        out = run(["ip", name], timeout("ip"))
    except (NotFound, TartTimeout):
        raise
    except TartError as exc:
        if exc.exit_code == 1 and "no IP address" in exc.stderr:
            return None
        raise
    address = out.strip().splitlines()
    return address[-1].strip() if address else None


def version() -> str:
    return run(["--version"], timeout("version")).strip()


# --- argument lists of the long commands (run by jobs through stream()) -----------------------------

def run_argv(name: str) -> list[str]:
    return argv("run", "--vnc", "--no-graphics", name)


def stop_argv(name: str, grace: int | None = 30) -> list[str]:
    return argv("stop", "--timeout", str(grace), name) if grace is not None else argv("stop", name)


def delete_argv(name: str) -> list[str]:
    return argv("delete", name)


def pull_argv(oci_url: str) -> list[str]:
    return argv("pull", oci_url)


def clone_argv(source: str, target: str) -> list[str]:
    return argv("clone", source, target)


def set_argv(name: str, *, cpu: int | None = None, memory_mb: int | None = None,
             disk_gb: int | None = None) -> list[str]:
    args = ["set", name]
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    if memory_mb is not None:
        args += ["--memory", str(memory_mb)]
    if disk_gb is not None:
        args += ["--disk-size", str(disk_gb)]
    return argv(*args)


@dataclass
class Outcome:
    argv: list[str]
    exit_code: int
    stderr: str


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def split_lines(buffer: str) -> tuple[list[str], str]:
    """Complete lines (ended by \\n or \\r, as progress bars redraw; terminal escapes such as tart's
    "cursor up, erase line" removed, blank lines dropped) and the unfinished rest."""
    lines, start = [], 0
    for i, ch in enumerate(buffer):
        if ch in "\r\n":
            line = _ANSI.sub("", buffer[start:i])
            if line.strip():
                lines.append(line)
            start = i + 1
    return lines, buffer[start:]


def stream(cmd: list[str], cmd_timeout: float, *, on_line: Callable[[str], None],
           on_stderr: Callable[[str], None] | None = None, check: bool = True) -> Outcome:
    """Run a long tart command, calling on_line for each stdout line as it is printed.

    stderr is kept (and passed to on_stderr line by line); raise TartTimeout when it overruns,
    and, with check, the TartError of a non-zero exit.
    """
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise _missing(cmd) from None
    err_chunks: list[str] = []

    def drain_stderr():
        for raw in proc.stderr:
            text = raw.decode(errors="replace")
            err_chunks.append(text)
            if on_stderr:
                on_stderr(text)

    drain = threading.Thread(target=drain_stderr, daemon=True)
    drain.start()
    timed_out = threading.Event()

    def expire():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(cmd_timeout, expire)
    timer.start()
    pending = ""
    try:
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            lines, pending = split_lines(pending + chunk.decode(errors="replace"))
            for line in lines:
                on_line(line)
        if _ANSI.sub("", pending).strip():
            on_line(_ANSI.sub("", pending))
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    drain.join(5)
    stderr = "".join(err_chunks)
    if timed_out.is_set():
        raise TartTimeout(f"{' '.join(cmd[1:2]) or 'tart'} timed out after {cmd_timeout:g} s", argv=cmd,
                          exit_code=code, stderr=stderr)
    if check and code != 0:
        raise error_for(cmd, code, stderr)
    return Outcome(cmd, code, stderr)


def spawn_run(name: str, log_path: Path) -> subprocess.Popen:
    """`tart run --vnc --no-graphics NAME` detached: its own session, output to log_path."""
    cmd = run_argv(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise _missing(cmd) from None


def wait_ip(name: str, proc: subprocess.Popen, *, poll: float, wait: float,
            on_tick: Callable[[], None] | None = None) -> str | None:
    """Poll `tart ip` every `poll` s for up to `wait` s; return the IP, or None if none came.

    Raise TartError when the `tart run` process exits meanwhile (with its exit code)."""

    def attempt() -> str | None:
        if on_tick:
            on_tick()
        code = proc.poll()
        if code is not None:
            raise TartError(f"tart run exited with code {code} before the VM got an IP address",
                            argv=run_argv(name), exit_code=code)
        try:
            return ip(name)
        except TartTimeout:
            return None

    # Retried while no address came; an error (tart run died) is not retried: it ends the wait.
    polling = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda address: not address),
        wait=tenacity.wait_fixed(poll), stop=tenacity.stop_after_delay(wait),
        retry_error_callback=lambda state: None,
    )
    return polling(attempt)

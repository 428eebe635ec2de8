"""Run a command for a task: argument list only, output lines streamed into the task's logs."""

import subprocess
import threading
import time

from .runner import TaskContext, TaskFailed


def run_logged(ctx: TaskContext, argv: list[str], *, timeout: float, record: bool = True,
               env: dict | None = None) -> tuple[int, str]:
    """Run argv, log every stdout line as it arrives, keep stderr; raise TaskFailed on error/timeout."""
    if record:
        ctx.set(command=list(argv))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env=env)
    err_chunks: list[str] = []
    drain = threading.Thread(target=lambda: err_chunks.extend(proc.stderr), daemon=True)
    drain.start()
    deadline = time.monotonic() + timeout
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            ctx.log(line)
        code = proc.wait()
    finally:
        timer.cancel()
    drain.join(5)
    stderr = "".join(err_chunks)
    ctx.set(exit_code=code, stderr=stderr or None)
    if time.monotonic() >= deadline and code < 0:
        raise TaskFailed(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} timed out after {timeout:g} s",
                         stderr=stderr, exit_code=code)
    if code != 0:
        message = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise TaskFailed(message, stderr=stderr, exit_code=code)
    return code, stderr

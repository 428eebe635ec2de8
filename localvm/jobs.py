"""Long VM actions, run by the worker as Tasks: start, stop, delete, pull, clone, create.

Every tart command is recorded (`command`, `exit_code`), its stdout lines stream into the task's logs as
they are printed and its stderr is kept. A tart failure fails the task with tart's own message. Each job
refreshes the inventory when it ends, so GET /api/vms shows the result.
"""

import functools
import shlex
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from ttproject.tasks.models import TERMINAL, Task
from ttproject.tasks.registry import job
from ttproject.tasks.runner import TaskContext, TaskFailed

from . import conf, inventory, tart


def runs_dir() -> Path:
    return Path(settings.DATA_DIR) / "localvm" / "runs"


def vnc_url(ip_address: str | None) -> str | None:
    return f"vnc://{ip_address}" if ip_address else None


def tart_job(fn):
    """Turn tart errors into a failed task (with tart's stderr) and refresh the inventory afterwards."""

    @functools.wraps(fn)
    def wrapper(ctx: TaskContext):
        try:
            return fn(ctx)
        except tart.TartError as exc:
            raise TaskFailed(str(exc), stderr=exc.stderr or None, exit_code=exc.exit_code) from None
        finally:
            inventory.refresh_quietly()

    return wrapper


def _stream(ctx: TaskContext, cmd: list[str], timeout: float, *, check: bool = True) -> tart.Outcome:
    ctx.set(command=cmd, exit_code=None)
    ctx.log("$ " + shlex.join(cmd))
    outcome = tart.stream(cmd, timeout, on_line=ctx.log, on_stderr=ctx.stderr, check=False)
    ctx.set(exit_code=outcome.exit_code)
    if check and outcome.exit_code != 0:
        raise tart.error_for(cmd, outcome.exit_code, outcome.stderr)
    return outcome


def _listed(name: str) -> dict | None:
    return next((item for item in tart.list_vms() if item.get("Name") == name), None)


def _is_running(name: str) -> bool:
    """From `tart list` (which also knows OCI images, unlike `tart get`); NotFound if absent."""
    item = _listed(name)
    if item is None:
        raise tart.NotFound(f'the specified VM "{name}" does not exist')
    return item.get("Running") is True or str(item.get("State", "")).lower() == "running"


class _LogFollower:
    """Copies the lines `tart run` writes to its log file into the task's logs."""

    def __init__(self, ctx: TaskContext, path: Path):
        self.ctx, self.path, self.offset, self.pending = ctx, path, 0, ""

    def tick(self, final: bool = False):
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines, self.pending = tart.split_lines(self.pending + data.decode(errors="replace"))
        if final:
            lines += tart.split_lines(self.pending + "\n")[0]
            self.pending = ""
        for line in lines:
            self.ctx.log(line)


def _start(ctx: TaskContext, name: str) -> dict:
    if _is_running(name):
        try:
            address = tart.ip(name)
        except tart.TartTimeout:
            address = None
        return {"message": f"VM {name} is already running", "ip_address": address, "vnc_url": vnc_url(address)}
    log_path = runs_dir() / f"{name}-{ctx.id}.log"
    cmd = tart.run_argv(name)
    ctx.set(command=cmd, exit_code=None)
    ctx.log("$ " + shlex.join(cmd) + f"  (detached, output in {log_path})")
    proc = tart.spawn_run(name, log_path)
    (runs_dir() / f"{name}.pid").write_text(f"{proc.pid}\n")
    follower = _LogFollower(ctx, log_path)
    try:
        address = tart.wait_ip(name, proc, poll=conf.START_POLL, wait=conf.START_WAIT, on_tick=follower.tick)
    except tart.TartError as exc:
        follower.tick(final=True)
        output = log_path.read_text(errors="replace") if log_path.exists() else ""
        code = proc.poll()
        ctx.set(exit_code=code)
        last = output.strip().splitlines()[-1] if output.strip() else str(exc)
        raise TaskFailed(f"tart run failed: {last}", stderr=output or exc.stderr or None, exit_code=code) from None
    follower.tick()
    ctx.set(exit_code=None)  # `tart run` keeps running with the VM
    if address is None:
        ctx.log(f"no IP address after {conf.START_WAIT:g} s; the VM is running")
        return {"message": f"VM {name} started; no IP address yet", "ip_address": None, "vnc_url": None}
    ctx.log(f"IP address: {address}")
    return {"message": f"VM {name} started", "ip_address": address, "vnc_url": vnc_url(address)}


def _stop(ctx: TaskContext, name: str) -> None:
    try:
        _stream(ctx, tart.stop_argv(name, 30), tart.timeout("stop"))
    except tart.NotFound:
        raise
    except tart.TartError as exc:
        ctx.log(f"graceful stop failed ({exc}); trying plain tart stop")
        _stream(ctx, tart.stop_argv(name, None), tart.timeout("stop"))


@job("localvm.start")
@tart_job
def start(ctx: TaskContext) -> dict:
    return _start(ctx, ctx.params["name"])


@job("localvm.stop")
@tart_job
def stop(ctx: TaskContext) -> dict:
    name = ctx.params["name"]
    if not _is_running(name):
        return {"message": f"VM {name} is already stopped"}
    _stop(ctx, name)
    return {"message": f"VM {name} stopped"}


@job("localvm.delete")
@tart_job
def delete(ctx: TaskContext) -> dict:
    name = ctx.params["name"]
    if _is_running(name):
        _stop(ctx, name)
    _stream(ctx, tart.delete_argv(name), tart.timeout("delete"))
    inventory.forget_config(name)
    return {"message": f"VM {name} deleted"}


@job("localvm.pull")
@tart_job
def pull(ctx: TaskContext) -> dict:
    oci_url = ctx.params["oci_url"]
    _stream(ctx, tart.pull_argv(oci_url), tart.timeout("pull"))
    inventory.forget_config(oci_url)
    return {"message": f"Pulled {oci_url}", "name": oci_url}


def _clone(ctx: TaskContext, source: str, target: str) -> None:
    names = {item.get("Name") for item in tart.list_vms()}  # one `tart list` for both names
    if target in names:  # `tart clone` would silently overwrite it
        raise TaskFailed(f"VM {target} already exists")
    # Cloning an OCI image that is not pulled yet pulls it first: give it the pull's time.
    timeout = tart.timeout("clone") if source in names else tart.timeout("pull")
    _stream(ctx, tart.clone_argv(source, target), timeout)
    inventory.forget_config(target)


@job("localvm.clone")
@tart_job
def clone(ctx: TaskContext) -> dict:
    source, target = ctx.params["name"], ctx.params["new_name"]
    _clone(ctx, source, target)
    result = {"message": f"Cloned {source} to {target}", "name": target, "ip_address": None, "vnc_url": None}
    if ctx.params.get("start_after_clone"):
        started = _start(ctx, target)
        result.update(started, message=f"Cloned {source} to {target}; {started['message']}")
    return result


@job("localvm.create")
@tart_job
def create(ctx: TaskContext) -> dict:
    p = ctx.params
    name = p["name"]
    _clone(ctx, p["source_vm"], name)
    memory_mb = p["memory"] * 1024 if p.get("memory") is not None else None
    if any(p.get(k) is not None for k in ("cpu", "memory", "disk_size")):
        cmd = tart.set_argv(name, cpu=p.get("cpu"), memory_mb=memory_mb, disk_gb=p.get("disk_size"))
        try:
            _stream(ctx, cmd, tart.timeout("set"))
        except tart.TartError as exc:
            ctx.log(f"tart set failed ({exc}); deleting the half-made VM {name}")
            try:
                _stream(ctx, tart.delete_argv(name), tart.timeout("delete"))
            except tart.TartError as cleanup:
                ctx.log(f"could not delete {name}: {cleanup}")
            raise
    inventory.forget_config(name)
    config = inventory.config(name, force=True)
    return {"message": f"Created VM {name} from {p['source_vm']}", "name": name, "config": config}


def prune_tasks() -> int:
    """Drop finished tasks older than TASK_KEEP_DAYS, and beyond the newest TASK_KEEP."""
    finished = Task.objects.filter(status__in=TERMINAL)
    gone, _ = finished.filter(updated_at__lt=timezone.now() - timedelta(days=conf.TASK_KEEP_DAYS)).delete()
    keep = list(finished.order_by("-created_at").values_list("pk", flat=True)[conf.TASK_KEEP:conf.TASK_KEEP + 1])
    if keep:
        cutoff = finished.get(pk=keep[0]).created_at
        extra, _ = finished.filter(created_at__lte=cutoff).delete()
        gone += extra
    return gone

"""`ttstack env ...`: create, list, show, stop, start, delete, extend, wait for and ssh into environments."""

from __future__ import annotations

import time
from pathlib import Path

import click

from . import completion
from .api import Api, segment
from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, CliError
from .output import emit, fields, table, until, when
from .session import api_command
from .ssh import ssh_command
from .units import DURATION, VM_SPEC, format_duration
from .vms import VM_COLUMNS, vm_row
from .watch import Watch

ENV_STATES = ("creating", "active", "stopping", "stopped", "starting", "deleting", "failed")
NO_WAIT = click.option("--no-wait", is_flag=True, help="return at once with the task (follow it with "
                                                       "`ttstack task watch ID`)")
ENV_NAME = click.argument("name", shell_complete=completion.env_names)


@click.group("env", help="Environments: named groups of VMs with a lifetime.")
def env_group():
    pass


def env_path(name: str, action: str = "") -> str:
    return f"/api/envs/{segment(name)}" + (f"/{action}" if action else "")


def render_env(env: dict):
    from rich.console import Group

    summary = fields([("name", env["id"]), ("owner", env.get("owner")), ("state", env.get("state")),
                      ("error", env.get("error")), ("lifetime", format_duration(env.get("lifetime") or 0)
                                                    if env.get("lifetime") else "never expires"),
                      ("expires", f"{when(env.get('expires_at'))} ({until(env.get('expires_at'))})"
                       if env.get("expires_at") else "never"),
                      ("created", when(env.get("created_at")))])
    vms = table(VM_COLUMNS, [vm_row(env["id"], vm) for vm in env.get("vms") or []])
    return Group(summary, "", vms)


def _vm_summary(env: dict) -> str:
    vms = env.get("vms") or []
    states: dict[str, int] = {}
    for vm in vms:
        states[vm.get("state")] = states.get(vm.get("state"), 0) + 1
    return f"{len(vms)} (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")" if vms else "0"


def render_envs(envs: list):
    return table(("NAME", "OWNER", "STATE", "VMS", "EXPIRES", "CREATED"),
                 [(e["id"], e.get("owner"), e.get("state"), _vm_summary(e), until(e.get("expires_at")),
                   when(e.get("created_at"))) for e in envs])


@env_group.command("list", help="List environments (an owner sees only hers).")
@click.option("--state", "states", multiple=True, type=click.Choice(ENV_STATES), help="only these states")
@click.option("--owner", default=None, help="only this owner's")
@api_command
def env_list(api: Api, states, owner, fmt):
    emit(api.get("/api/envs", state=list(states), owner=owner), fmt, render_envs)


@env_group.command("show", help="One environment and its VMs (state, host, SSH, ports).")
@ENV_NAME
@api_command
def env_show(api: Api, name, fmt):
    emit(api.get(env_path(name)), fmt, render_env)


def follow(api: Api, reply: dict, env_id: str, no_wait: bool, fmt: str, *, gone_ok: bool = False):
    """After a 202: return at once (--no-wait) or watch the task, then print the environment."""
    task_id = reply.get("task")
    if no_wait or not task_id:
        emit(reply, fmt, lambda r: f"environment {env_id}: {r.get('state')}; task {task_id} "
                                   f"(follow it: ttstack task watch {task_id})")
        return
    watch = Watch(api, task_id, env_id)
    task = watch.run()
    try:
        env = api.get(env_path(env_id))
    except CliError as exc:
        if not (gone_ok and exc.exit_code == EXIT_NOT_FOUND):
            raise
        emit(task, fmt, lambda _t: f"environment {env_id} deleted")
        return
    emit(env, fmt, render_env)  # also when it failed: scripts get the environment and its reasons
    if (error := watch.failure()) is not None:
        raise error


def _read_key(path: Path) -> str:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise CliError(f"{path} holds no SSH public key", EXIT_USAGE)
    return lines[0]


def default_keys() -> list[Path]:
    return sorted((Path.home() / ".ssh").glob("*.pub"))


def create_body(name, vms, count, keys, lifetime, deny_outgoing, owner, spec_file) -> dict:
    """The CreateEnvReq body from the options (and the -f file, whose fields the options override)."""
    body: dict = {}
    if spec_file is not None:
        if vms:
            raise click.UsageError("give the VMs with --vm or in -f FILE, not both")
        import yaml

        try:
            body = yaml.safe_load(spec_file.read())
        except yaml.YAMLError as exc:
            raise click.UsageError(f"{spec_file.name}: not JSON or YAML: {exc}") from exc
        if not isinstance(body, dict):
            raise click.UsageError(f"{spec_file.name}: expected a CreateEnvReq object (id, ssh_keys, vms, ...)")
    if name:
        body["id"] = name
    if not body.get("id"):
        raise click.UsageError("the environment needs a NAME (or an `id` in -f FILE)")
    if vms:
        body["vms"] = [dict(vm) for vm in vms]
    if not body.get("vms"):
        raise click.UsageError("give at least one VM: --vm image=NAME[,engine=...,cpu=...,mem=...]")
    body["vms"] = [dict(vm) for _ in range(count) for vm in body["vms"]]
    if deny_outgoing:
        for vm in body["vms"]:
            vm["deny_outgoing"] = True
    if lifetime is not None:
        body["lifetime"] = lifetime
    if owner:
        body["owner"] = owner
    if keys:
        body["ssh_keys"] = [_read_key(Path(k)) for k in keys]
    elif not body.get("ssh_keys"):
        found = default_keys()
        if not found:
            raise click.UsageError("no SSH public key: give --key FILE (none found in ~/.ssh/*.pub)")
        body["ssh_keys"] = [_read_key(p) for p in found]
    return body


@env_group.command("create", help="Create an environment and follow it until its VMs run.")
@click.argument("name", required=False)
@click.option("--vm", "vms", multiple=True, type=VM_SPEC, metavar="SPEC",
              help="a VM: image=NAME,engine=qemu,cpu=1,mem=1G,disk=4G,ports=80,443 (repeatable)")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="make COUNT of each VM")
@click.option("--key", "keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="SSH public key file (repeatable; default: ~/.ssh/*.pub)")
@click.option("--lifetime", type=DURATION, default=None, help="e.g. 90m, 2h, 1d; 0 = never (default: server's)")
@click.option("--deny-outgoing", is_flag=True, help="block traffic the VMs start")
@click.option("--owner", default=None, help="owner label (operators only; owners always create their own)")
@click.option("-f", "--file", "spec_file", type=click.File("r"), default=None,
              help="the CreateEnvReq body as JSON or YAML ('-' reads stdin)")
@NO_WAIT
@api_command
def env_create(api: Api, name, vms, count, keys, lifetime, deny_outgoing, owner, spec_file, no_wait, fmt):
    body = create_body(name, vms, count, keys, lifetime, deny_outgoing, owner, spec_file)
    reply = api.post("/api/envs", body)
    follow(api, reply, body["id"], no_wait, fmt)


def _power(action: str, help_text: str):
    @env_group.command(action, help=help_text)
    @ENV_NAME
    @NO_WAIT
    @api_command
    def command(api: Api, name, no_wait, fmt):
        follow(api, api.post(env_path(name, action)), name, no_wait, fmt)

    return command


env_stop = _power("stop", "Stop every VM of the environment (disks are kept).")
env_start = _power("start", "Start the environment's VMs again.")


@env_group.command("delete", help="Destroy every VM of the environment.")
@ENV_NAME
@NO_WAIT
@api_command
def env_delete(api: Api, name, no_wait, fmt):
    follow(api, api.call("DELETE", env_path(name)), name, no_wait, fmt, gone_ok=True)


@env_group.command("extend", short_help="Expire DURATION from now.", help="Set the environment to expire DURATION from now (e.g. 2h, 1d).")
@ENV_NAME
@click.argument("lifetime", type=DURATION)
@api_command
def env_extend(api: Api, name, lifetime, fmt):
    reply = api.post(env_path(name, "extend"), {"lifetime": lifetime}, feature="env extend")
    if not isinstance(reply, dict) or "vms" not in reply:
        reply = api.get(env_path(name))
    emit(reply, fmt, render_env)


@env_group.command("wait", short_help="Wait for a state (default active).", help="Wait until the environment is in STATE ('deleted': until it is gone).")
@ENV_NAME
@click.option("--state", "wanted", type=click.Choice((*ENV_STATES, "deleted")), default="active",
              show_default=True)
@click.option("--timeout", type=DURATION, default=None, help="give up after this long (exit 1)")
@api_command
def env_wait(api: Api, name, wanted, timeout, fmt):
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        try:
            env = api.get(env_path(name))
        except CliError as exc:
            if wanted == "deleted" and exc.exit_code == EXIT_NOT_FOUND:
                emit({"id": name, "state": "deleted"}, fmt, lambda _e: f"environment {name} deleted")
                return
            raise
        if env.get("state") == wanted:
            emit(env, fmt, render_env)
            return
        if env.get("state") == "failed":
            raise CliError(f"environment {name} failed: {env.get('error') or 'no reason given'}", EXIT_FAILED)
        if deadline is not None and time.monotonic() >= deadline:
            raise CliError(f"environment {name} is still {env.get('state')} after {format_duration(timeout)}")
        time.sleep(1)


env_group.add_command(ssh_command)

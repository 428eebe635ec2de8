"""`ttstack host ...`: the agents the controller places VMs on (operators only). HOST is the host's id, its
agent address (host:port) or its hostname."""

from __future__ import annotations

import click

from . import completion
from .api import Api
from .errors import EXIT_NOT_FOUND, CliError
from .output import emit, fields, table, when
from .session import api_command
from .watch import Watch

HOST = click.argument("host", shell_complete=completion.host_names)


@click.group("host", help="Hosts: the agents VMs are placed on (operators only).")
def host_group():
    pass


def host_id(api: Api, ref: str) -> int:
    if ref.isdigit():
        return int(ref)
    for host in api.get("/api/hosts"):
        if ref in (host.get("addr"), host.get("hostname")):
            return host["id"]
    raise CliError(f"host {ref!r} not found", EXIT_NOT_FOUND)


def _free(host: dict, resource: str) -> str:
    total = (host.get("resources") or {}).get(f"{resource}_total") or 0
    used = (host.get("reserved") or {}).get(resource) or 0
    return f"{used}/{total}"


def render_hosts(hosts: list):
    return table(("ID", "ADDR", "HOSTNAME", "STATE", "DRAIN", "ENGINES", "CPU", "MEM MiB", "DISK MiB", "VMS"),
                 [(h["id"], h.get("addr"), h.get("hostname"), h.get("state"), "yes" if h.get("drain") else "no",
                   ",".join(h.get("engines") or []), _free(h, "cpu"), _free(h, "mem"), _free(h, "disk"),
                   h.get("vms")) for h in hosts])


def render_host(host: dict):
    from rich.console import Group

    unavailable = "; ".join(f"{k}: {v}" for k, v in (host.get("engines_unavailable") or {}).items())
    summary = fields([
        ("id", host["id"]), ("addr", host.get("addr")), ("hostname", host.get("hostname")),
        ("state", host.get("state")), ("drain", "yes" if host.get("drain") else "no"),
        ("version", host.get("version")), ("storage", host.get("storage")),
        ("engines", ", ".join(host.get("engines") or [])), ("unavailable", unavailable),
        ("cpu reserved", _free(host, "cpu")), ("mem reserved", _free(host, "mem") + " MiB"),
        ("disk reserved", _free(host, "disk") + " MiB"), ("VMs", host.get("vms")),
        ("last seen", when(host.get("last_seen"))), ("error", host.get("error"))])
    images = table(("IMAGE", "KIND", "ENGINES"), [(i.get("name"), i.get("kind"), ",".join(i.get("engines") or []))
                                                  for i in host.get("images") or [] if isinstance(i, dict)])
    return Group(summary, "", images)


@host_group.command("add", help="Register the agent at ADDR (host:port); it is probed first.")
@click.argument("addr")
@click.option("--key", "api_key", default=None, help="the agent's API key")
@api_command
def host_add(api: Api, addr, api_key, fmt):
    body = {"addr": addr, **({"api_key": api_key} if api_key else {})}
    emit(api.post("/api/hosts", body), fmt, render_host)


@host_group.command("list", help="List hosts with their reservations.")
@click.option("--state", type=click.Choice(["online", "offline"]), default=None)
@api_command
def host_list(api: Api, state, fmt):
    emit(api.get("/api/hosts", state=state), fmt, render_hosts)


@host_group.command("show", help="One host: engines, storage, images, resources.")
@HOST
@api_command
def host_show(api: Api, host, fmt):
    emit(api.get(f"/api/hosts/{host_id(api, host)}"), fmt, render_host)


def _set_drain(name: str, drain: bool, help_text: str):
    @host_group.command(name, help=help_text)
    @HOST
    @api_command
    def command(api: Api, host, fmt):
        reply = api.call("PATCH", f"/api/hosts/{host_id(api, host)}", json={"drain": drain}, feature=f"host {name}")
        emit(reply, fmt, render_host)

    return command


host_drain = _set_drain("drain", True, "Stop placing new VMs on the host (its VMs keep running).")
host_undrain = _set_drain("undrain", False, "Place new VMs on the host again.")


@host_group.command("detach", short_help="Give up on a dead host.", help="Give up on a dead host: its VMs are lost, their environments finish "
                                   "without it.")
@HOST
@click.option("--no-wait", is_flag=True, help="do not follow the task, if the controller starts one")
@api_command
def host_detach(api: Api, host, no_wait, fmt):
    ident = host_id(api, host)
    reply = api.post(f"/api/hosts/{ident}/detach", feature="host detach")
    if isinstance(reply, dict) and reply.get("task") and not no_wait:
        Watch(api, reply["task"]).check()
        reply = api.get(f"/api/hosts/{ident}")
    emit(reply, fmt, render_host)


@host_group.command("rm", short_help="Remove a host.", help="Remove a host (refused while it still has VMs, unless it is detached).")
@HOST
@api_command
def host_rm(api: Api, host, fmt):
    ident = host_id(api, host)
    api.call("DELETE", f"/api/hosts/{ident}")
    emit({"id": ident, "deleted": True}, fmt, lambda _r: f"host {host} removed")

"""`ttstack login` (remember a controller and its token under a profile) and `ttstack status`."""

from __future__ import annotations

import sys

import click

from . import config
from .api import Api, require_auth_ok
from .output import emit, fields
from .session import api_command, current_session


@click.command(short_help="Remember a controller and its token.", help="Check URL and token against the controller's /api/status and remember them "
                    "(in $XDG_CONFIG_HOME/ttstack/config.toml, 0600) under a profile.")
@click.argument("url")
@click.option("--token", default=None, help="the operators' key or an owner's personal token")
@click.option("--token-stdin", is_flag=True, help="read the token from stdin (keeps it out of `ps`)")
@click.option("--profile", "profile", default=None, help="profile name (default: the global --profile, "
                                                         "TTSTACK_PROFILE, or 'default')")
def login(url, token, token_stdin, profile):
    if token and token_stdin:
        raise click.UsageError("give --token or --token-stdin, not both")
    if token_stdin:
        token = sys.stdin.readline().strip()
    elif token is None and sys.stdin.isatty():
        token = click.prompt("Token (empty for an open API)", default="", hide_input=True, show_default=False)
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    name = profile or config.profile_name(current_session().profile)
    api = Api(config.Target(url=url, token=token or None, profile=name))
    try:
        status = require_auth_ok(api)
    finally:
        api.close()
    path = config.store_profile(name, url, token or None)
    click.echo(f"Logged in to {url} as profile {name!r} ({status.get('hosts_online', '?')} of "
               f"{status.get('hosts', '?')} hosts online); saved in {path}")


def render_status(data: dict):
    status = data["status"]

    def pair(used, total, unit=""):
        return f"{status.get(used)}/{status.get(total)}{unit}"

    states = ", ".join(f"{n} {s}" for s, n in sorted((status.get("envs_by_state") or {}).items()))
    vm_states = ", ".join(f"{n} {s}" for s, n in sorted((status.get("vms_by_state") or {}).items()))
    return fields([("controller", data["url"]), ("profile", data["profile"]),
                   ("hosts online", f"{status.get('hosts_online')}/{status.get('hosts')}"),
                   ("cpu reserved", pair("cpu_used", "cpu_total")),
                   ("mem reserved", pair("mem_used", "mem_total", " MiB")),
                   ("disk reserved", pair("disk_used", "disk_total", " MiB")),
                   ("environments", f"{status.get('total_envs')}" + (f" ({states})" if states else "")),
                   ("VMs", f"{status.get('total_vms')}" + (f" ({vm_states})" if vm_states else "")),
                   *(("warning", text) for text in status.get("warnings") or [])])


@click.command(short_help="The fleet's figures.", help="The fleet's figures: hosts online, reserved cpu/mem/disk, environments and VMs by state.")
@api_command
def status(api: Api, fmt):
    reply = api.get("/api/status")
    emit(reply, fmt, lambda r: render_status({"status": r, "url": api.target.url, "profile": api.target.profile}))

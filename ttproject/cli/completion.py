"""Shell completion (click's, for bash and zsh): commands and options, plus environment and host names
asked of the controller as you type. Enable with `eval "$(ttstack completion bash)"` (or zsh)."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

from .api import Api
from .config import resolve

COMPLETE_VAR = "_TTSTACK_COMPLETE"
COMPLETION_TIMEOUT = 3.0  # seconds: a slow controller must not hang the shell


def _ask(ctx: click.Context, path: str) -> list:
    """GET `path` with the command line's profile; nothing (never an error) when that fails."""
    try:
        api = Api(resolve(ctx.find_root().params.get("profile")), timeout=COMPLETION_TIMEOUT)
        try:
            reply = api.get(path)
        finally:
            api.close()
    except Exception:  # completion must never print errors into the shell
        return []
    return reply if isinstance(reply, list) else []


def env_names(ctx, param, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(env["id"], help=env.get("state")) for env in _ask(ctx, "/api/envs")
            if str(env.get("id", "")).startswith(incomplete)]


def env_vm_names(ctx, param, incomplete: str) -> list[CompletionItem]:
    """NAME/INDEX for every VM of the environments that match."""
    items = []
    for env in _ask(ctx, "/api/envs"):
        for vm in env.get("vms") or []:
            ref = f"{env['id']}/{vm.get('index')}"
            if ref.startswith(incomplete):
                items.append(CompletionItem(ref, help=f"{vm.get('engine')} {vm.get('state')}"))
    return items


def host_names(ctx, param, incomplete: str) -> list[CompletionItem]:
    items = []
    for host in _ask(ctx, "/api/hosts"):
        for value in (host.get("addr"), str(host.get("id"))):
            if value and value.startswith(incomplete):
                items.append(CompletionItem(value, help=f"host {host.get('id')} {host.get('state')}"))
    return items


@click.command(short_help="Print the bash or zsh completion script.", help="Print the shell completion script: eval \"$(ttstack completion bash)\" (or zsh).")
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
@click.pass_context
def completion(ctx, shell):
    script = get_completion_class(shell)(ctx.find_root().command, {}, "ttstack", COMPLETE_VAR).source()
    click.echo(script)

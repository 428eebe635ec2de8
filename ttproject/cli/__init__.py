"""`ttstack`: one command for the servers and for the client of a controller's API.

Servers: controller, agent, localvm, worker, up, image build, manage (ttproject/cli/servers.py).
Client:  login, status, env, host, image, task, completion (docs/cli.md lists every command and option).
"""

from __future__ import annotations

import os
import sys

import click

from . import account, completion, envs, hosts, images, servers, tasks
from .session import Session

CLIENT_COMMANDS = {"login", "status", "env", "host", "image", "task", "completion"}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--profile", default=None, help="controller profile to use (default: TTSTACK_PROFILE, "
                                              "else the config's default_profile)")
@click.version_option("0.1.0", prog_name="ttstack")
@click.pass_context
def cli(ctx, profile):
    """Disposable environments of VMs and containers on a fleet of hosts.

    Servers: controller, agent, localvm, worker, up, image build, manage.
    Client: login, status, env, host, image, task (see docs/cli.md).
    """
    ctx.obj = Session(profile)


for command in servers.COMMANDS:
    cli.add_command(command)
images.image_group.add_command(servers.image_build)
for command in (account.login, account.status, envs.env_group, hosts.host_group, images.image_group,
                tasks.task_group, completion.completion):
    cli.add_command(command)


def _is_client(argv: list[str]) -> bool:
    words, skip = [], False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = arg == "--profile"  # the global option's value is not a command
            continue
        words.append(arg)
    return bool(words) and words[0] in CLIENT_COMMANDS and words[:2] != ["image", "build"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return cli.main(args=args, prog_name="ttstack", standalone_mode=True) or 0
    except Exception as exc:
        # Client commands report errors in one line, never a traceback (TTSTACK_DEBUG=1 shows it).
        # Server commands keep theirs: an operator needs the whole story of a failed start.
        if not _is_client(args) or os.environ.get("TTSTACK_DEBUG"):
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc} (TTSTACK_DEBUG=1 shows the traceback)",
                   err=True)
        return 1

"""docs/cli.md lists every command, option and exit code the `ttstack` command has."""

from __future__ import annotations

import click

from tests.conftest import ROOT
from ttproject.cli import cli, errors


def commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_and_option_is_documented():
    doc = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for path, command in commands(cli):
        name = " ".join(path)
        if f"ttstack {name}" not in doc and f"`{name}" not in doc:
            missing.append(name)
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                if not any(f"`{opt}" in doc or f"{opt} " in doc for opt in param.opts):
                    missing.append(f"{name} {'/'.join(param.opts)}")
    assert not missing, f"not in docs/cli.md: {missing}"
    for code in (errors.EXIT_OK, errors.EXIT_FAILED, errors.EXIT_USAGE, errors.EXIT_NOT_FOUND, errors.EXIT_AUTH,
                 errors.EXIT_INTERRUPTED):
        assert f"| {code} |" in doc

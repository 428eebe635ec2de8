"""`ttstack env extend` end to end: an owner moves her env's deadline up to the controller's limit, an
operator past it, another owner cannot touch it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from .test_commands import DOCKER_VM


def owner_profile(cli, controller, name: str) -> str:
    cli.ok("manage", "controller", "add_owner", name, "--password-stdin", input=f"pw-{name}\n", env=controller.env)
    token = cli.ok("manage", "controller", "drf_create_token", name, env=controller.env).stdout.split()[2]
    cli.ok("login", controller.url, "--token", token, "--profile", name)
    return name


def expires(env: dict) -> datetime:
    return datetime.fromisoformat(env["expires_at"].replace("Z", "+00:00"))


def test_env_extend(fleet, cli, env_name):
    controller, _agent = fleet
    cli.keygen()
    alice, bob = owner_profile(cli, controller, "alice"), owner_profile(cli, controller, "bob")
    name = env_name("ext")
    made = cli.json("--profile", alice, "env", "create", name, "--vm", DOCKER_VM, "--lifetime", "1h")
    assert made["owner"] == "alice" and made["state"] == "active"

    extended = cli.json("--profile", alice, "env", "extend", name, "2d")
    assert expires(extended) - datetime.now(UTC) > timedelta(days=1, hours=23)
    assert expires(cli.json("env", "show", name)) == expires(extended)

    refused = cli.run("--profile", alice, "env", "extend", name, "8d")
    assert refused.returncode == 1 and "TTSTACK_MAX_LIFETIME" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert expires(cli.json("env", "show", name)) == expires(extended)

    assert cli.run("--profile", bob, "env", "extend", name, "1h").returncode == 3

    by_operator = json.loads(cli.ok("env", "extend", name, "30d", "-o", "json").stdout)
    assert expires(by_operator) - datetime.now(UTC) > timedelta(days=29)
    cli.ok("env", "delete", name)

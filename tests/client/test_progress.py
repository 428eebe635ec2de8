"""`ttstack env create` follows the create live: in a real pseudo-terminal one line per VM redrawn in place
until all run; without a terminal plain lines; by polling when the WebSocket cannot be had; Ctrl-C stops the
watching and not the create, which `ttstack task watch ID` picks up again."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pexpect

from tests.conftest import ROOT, wait_for

from .test_commands import DOCKER_VM, api_json

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CURSOR_UP = "\x1b[1A"


def spawn(cli, *args: str) -> pexpect.spawn:
    return pexpect.spawn(cli.argv[0], [*cli.argv[1:], *args], env=cli.env, cwd=str(ROOT), encoding="utf-8",
                         dimensions=(40, 160), timeout=120)


def frames(raw: str, task_id: str) -> list[str]:
    """The successive renders of the live display (each starts with the task's header line)."""
    return [ANSI.sub("", part) for part in raw.split(f"task {task_id}")[1:]]


def vm_states(frame: str, name: str) -> dict[str, str]:
    return dict(re.findall(rf"({re.escape(name)}/\d+)\s+(\w+)", frame))


def test_create_in_a_terminal_redraws_one_line_per_vm(fleet, cli, env_name):
    cli.keygen()
    name = env_name("live")
    child = spawn(cli, "env", "create", name, "--vm", DOCKER_VM, "--vm", DOCKER_VM)
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before
    assert child.exitstatus == 0, raw[-3000:]
    task_id = re.search(r"task ([0-9a-f-]{36})", ANSI.sub("", raw)).group(1)
    shots = frames(raw, task_id)
    states = [vm_states(frame, name) for frame in shots]
    assert len(shots) >= 3 and CURSOR_UP in raw, "the display is redrawn in place, not appended"
    # every frame: at most one line per VM (none before the first state arrives), no other lines of VMs
    assert all(set(s) <= {f"{name}/0", f"{name}/1"} for s in states)
    assert all(frame.count(f"{name}/0") <= 1 for frame in shots[:-1]), [f for f in shots if f.count(f"{name}/0") > 1]
    assert any(s and set(s.values()) & {"pending", "creating"} for s in states), states
    assert states[-1] == {f"{name}/0": "running", f"{name}/1": "running"}
    assert "completed · env active" in shots[-1]
    cli.ok("env", "delete", name)


def test_create_without_a_terminal_prints_plain_lines(fleet, cli, env_name):
    cli.keygen()
    name = env_name("plain")
    done = cli.ok("env", "create", name, "--vm", DOCKER_VM)
    assert "\x1b[" not in done.stderr and "\r" not in done.stderr
    assert "watching by polling" not in done.stderr  # the task WebSocket carried it
    lines = done.stderr.splitlines()
    mine = [line for line in lines if line.startswith(f"{name}/0: ")]
    assert mine[0].startswith(f"{name}/0: pending") or mine[0].startswith(f"{name}/0: creating"), lines
    assert mine[-1].startswith(f"{name}/0: running (host ") and len(mine) == len(set(mine)) >= 2
    assert re.search(r"^task [0-9a-f-]{36} fleet.env_create: completed$", done.stderr, re.M)
    assert f"env {name}: active" in lines
    # stdout has the result only: the environment's table
    assert done.stdout.startswith("name") and f"{name}/0" in done.stdout
    cli.ok("env", "delete", name)


def test_without_websocket_the_client_polls(fleet, cli, env_name, no_websocket_proxy):
    controller, _ = fleet
    cli.keygen()
    proxied = {"TTSTACK_URL": no_websocket_proxy(controller.url), "TTSTACK_TOKEN": controller.api_key}
    name = env_name("poll")
    done = cli.ok("env", "create", name, "--vm", DOCKER_VM, env=proxied)
    assert "watching by polling" in done.stderr and f"{name}/0: running" in done.stderr
    assert api_json(controller, f"/api/envs/{name}")["state"] == "active"
    cli.ok("env", "delete", name, env=proxied)


def test_ctrl_c_stops_watching_not_the_create(role_server, agent_server, cli, env_name):
    """With no worker yet the create waits; Ctrl-C ends the watch (exit 130) and says how to resume; a worker
    started afterwards carries the create out and `ttstack task watch` follows it to the end."""
    agent = agent_server()
    controller = role_server("controller", args=["--no-worker"])
    cli.ok("login", controller.url, "--token", controller.api_key)
    cli.ok("host", "add", agent.addr, "--key", agent.api_key)
    cli.keygen()
    name = env_name("intr")
    child = spawn(cli, "env", "create", name, "--vm", DOCKER_VM)
    child.expect(rf"{name}/0\s+\S*\s*pending")
    child.sendintr()
    child.expect(r"Resume with: ttstack task watch ([0-9a-f-]{36})")
    task_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert api_json(controller, f"/api/tasks/{task_id}")["status"] == "pending"
    assert api_json(controller, f"/api/envs/{name}")["state"] == "creating"

    worker = subprocess.Popen([*cli.argv, "worker"], env=controller.env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        task = cli.json("task", "watch", task_id)
        assert task["status"] == "completed" and task["target"] == name
        wait_for(lambda: api_json(controller, f"/api/envs/{name}")["state"] == "active", timeout=30,
                 message="the environment active")
        cli.ok("env", "delete", name)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)

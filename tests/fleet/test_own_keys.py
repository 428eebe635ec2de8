"""Safe defaults of issue 11 with real processes on 127.0.0.1: every agent has its own key (made and printed
once by `ttstack agent --make-key`), the controller calls an agent with that key only, a key-less role on a
reachable address refuses to start, and registration destroys this controller's leftovers only."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT, free_port

TINY = "ttstack/tiny:latest"


def _vm(vm_id: str, **extra) -> dict:
    return {"id": vm_id, "image": TINY, "engine": "docker", "cpu": 1, "mem": 64, "disk": 64, "ports": [],
            "ssh_keys": [], **extra}


def direct(agent) -> httpx.Client:
    return httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {agent.own_key}"}, timeout=60)


@pytest.fixture
def keyed_agent(role_server, docker_client):
    """A docker agent that made its own key (`--make-key`); its containers are removed at teardown."""
    agents = []

    def start():
        agent = role_server("agent", api_key=None, args=["--make-key"], env={"TTSTACK_ENGINES": "docker"})
        agent.own_key = (agent.data_dir / "api_key").read_text().strip()  # started without --api-key
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
        host_id = (agent.data_dir / "host_id").read_text().strip()
        for container in docker_client.containers.list(all=True, filters={"label": f"ttstack.host_id={host_id}"}):
            with contextlib.suppress(Exception):
                container.remove(force=True)


def test_an_agent_makes_its_key_once_and_the_controller_calls_it_with_that_key_only(keyed_agent, role_server):
    agent = keyed_agent()
    key_file = agent.data_dir / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert agent.log().count(agent.own_key) == 2  # printed once: the key and the `host add` line
    assert httpx.get(f"{agent.url}/api/vms", timeout=30).status_code == 401
    with direct(agent) as call:
        assert call.get("/api/info").json()["auth"] == "api-key"

    agent.restart()  # a later start reads the key, and does not print it again
    assert key_file.read_text().strip() == agent.own_key
    assert agent.log().count(agent.own_key) == 2

    ctl = role_server("controller")  # its operators' key is "test-key": never sent to the agent
    with ctl.client() as c:
        refused = c.post("/api/hosts", json={"addr": agent.addr})
        assert refused.status_code == 400 and "refused the host's key" in refused.json()["detail"]
        assert c.post("/api/hosts", json={"addr": agent.addr, "api_key": "test-key"}).status_code == 400
        made = c.post("/api/hosts", json={"addr": agent.addr, "api_key": agent.own_key})
        assert made.status_code == 201, made.text
        assert "api_key" not in made.json()


def test_registration_destroys_own_leftovers_and_reports_foreign_vms(keyed_agent, role_server):
    agent = keyed_agent()
    ctl = role_server("controller")
    with ctl.client() as c, direct(agent) as call:
        mine = c.get("/api/status").json()["controller_id"]
        assert mine.startswith("ctl-")
        # As a host that comes back with what it ran for this controller, for another one, and by hand.
        for vm_id, extra in (("left-over", {"controller": mine}), ("theirs", {"controller": "ctl-another"}),
                             ("by-hand", {})):
            assert call.post("/api/vms", json=_vm(vm_id, **extra)).status_code == 201
        assert call.post("/api/vms", json=_vm("bad", controller="../x")).status_code == 400

        host = c.post("/api/hosts", json={"addr": agent.addr, "api_key": agent.own_key})
        assert host.status_code == 201, host.text
        assert call.get("/api/vms/left-over").status_code == 404
        assert {vm["id"]: vm["controller"] for vm in call.get("/api/vms").json()} == {
            "theirs": "ctl-another", "by-hand": ""}
        assert c.get(f"/api/hosts/{host.json()['id']}").json()["foreign_vms"] == [
            {"id": "by-hand", "controller": ""}, {"id": "theirs", "controller": "ctl-another"}]


def test_a_keyless_controller_on_a_reachable_address_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TTSTACK_API_KEY", "DATABASE_URL", "REDIS_URL")}
    env.update(TTSTACK_DATA_DIR=str(tmp_path / "data"))
    # Refused before anything listens: no address beyond loopback is ever bound by this test.
    done = subprocess.run([sys.executable, "-m", "ttproject.cli", "controller", "--bind", "0.0.0.0", "--port",
                           str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "without a key" in done.stderr and "--insecure-no-auth" in done.stderr and "--api-key" in done.stderr
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_insecure_no_auth_warns_at_start_and_in_the_status(role_server):
    ctl = role_server("controller", api_key=None, args=["--insecure-no-auth"])
    assert "WARNING insecure" in ctl.log()
    status = httpx.get(f"{ctl.url}/api/status", timeout=30).json()
    assert status["auth"] == "none-insecure" and "--insecure-no-auth" in status["warnings"][0]

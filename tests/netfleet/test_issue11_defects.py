"""Issue 11's defects, each shown on the namespace fleet and asserted the way the issue wants it to work.

Written against the code before the fixes: every test here failed then, for the reason its docstring names
(docs/testing.md lists the outcome of that run). They are the acceptance of the fixes; the tests of the
recovery defects (admin deletes, detach, the loop's per-host timeouts, worker heartbeats, scale-out) come
with their fixes.
"""

import json
import os
import signal
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for

from .conftest import OPERATOR_KEY
from .flows import (
    create_env,
    env_body,
    env_id,
    set_drain,
    wait_task,
)
from .hosts import child_env


def _started_or_exited(host, timeout: float = 90):
    """The agent's exit code if it exits, else None once it answers at its address."""

    def settled():
        if host.agent.poll() is not None:
            return ("exited", host.agent.returncode)
        try:
            httpx.get(f"{host.agent_url}/api/health", timeout=1)
            return ("serving", None)
        except httpx.HTTPError:
            return None

    return wait_for(settled, timeout=timeout, message=f"agent of {host.name} to start or exit")[1]


def _recorded(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# ------------------------------------------------------------------------------------ safe defaults


def test_agents_and_mistyped_addresses_never_receive_the_operator_key(netfleet, controller, tmp_path):
    """Before: the controller fell back from a host's own key to its operator key, so a plain HTTP
    listener given as a host address got `Authorization: Bearer <operator key>` (twice), and so did every
    call to a host registered without a key of its own."""
    [host] = netfleet(1, agents=False).hosts
    plain, fake = tmp_path / "plain.log", tmp_path / "fake-agent.log"
    host.spawn("aux", [sys.executable, "-m", "tests.netfleet.recorder", host.addr, "8080", str(plain)], log="plain")
    host.spawn("aux", [sys.executable, "-m", "tests.netfleet.recorder", host.addr, "9100", str(fake), "--agent"],
               log="fake")
    for port in (8080, 9100):
        wait_for(lambda p=port: _answers(f"http://{host.addr}:{p}/"), timeout=30, message=f"listener :{port}")
    ctl = controller(env={"TTSTACK_HEARTBEAT": "1"})
    with ctl.client() as c:
        assert c.post("/api/hosts", json={"addr": f"{host.addr}:8080"}).status_code == 400
        c.post("/api/hosts", json={"addr": f"{host.addr}:9100"})  # an agent that takes any key: the
        time.sleep(4)  # controller may register it or refuse it, and then beats it for a few rounds
    calls = _recorded(plain) + _recorded(fake)
    assert OPERATOR_KEY not in calls, f"the operator key was sent to hosts:\n{calls}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_agent_on_a_host_address_without_a_key_refuses_to_start(netfleet):
    """Before: `ttstack agent --bind ADDR` without a key served at once, and an unauthenticated
    POST /api/vms from anywhere answered 201; --insecure-no-auth did not exist."""
    [host] = netfleet(1, agents=False).hosts
    host.start_agent(key=False, wait=False)
    code = _started_or_exited(host)
    if code is None:  # it serves: show what anyone on the network can do
        made = httpx.post(f"{host.agent_url}/api/vms", timeout=60, json={
            "id": "anyone", "image": "ttstack/tiny:latest", "engine": "docker", "cpu": 1, "mem": 64, "disk": 64,
            "ports": [], "ssh_keys": []})
        pytest.fail(f"the key-less agent on {host.addr} serves; unauthenticated POST /api/vms -> {made.status_code}")
    assert code == 2 and "--insecure-no-auth" in host.log("agent"), host.log("agent")

    host.start_agent(key=False, args=["--insecure-no-auth"])  # the explicit opt-in starts, and says so
    assert "insecure" in host.log("agent").lower()
    info = httpx.get(f"{host.agent_url}/api/info", timeout=30)
    assert info.status_code == 200 and "insecure" in json.dumps(info.json()).lower(), info.text


@pytest.mark.parametrize("role", ["agent", "controller"])
def test_a_keyless_role_on_loopback_accepts_only_loopback_host_names(role_server, role):
    """Before: ALLOWED_HOSTS="*", so a page that rebinds its own DNS name to 127.0.0.1 reached a key-less
    agent or controller from the browser."""
    server = role_server(role, api_key=None, env={"TTSTACK_ENGINES": "docker"})
    path = "/api/info" if role == "agent" else "/api/status"
    assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200
    rebound = httpx.get(f"{server.url}{path}", headers={"Host": f"rebind.example:{server.port}"}, timeout=30)
    assert rebound.status_code == 400, rebound.text[:300]


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_data_dirs_are_0700_and_databases_and_keys_0600(netfleet):
    """Before: `ttstack up` left its data dirs 0755 and controller.sqlite3 / agent.sqlite3 0644 (readable,
    with the hosts' keys and owner tokens, by any local user); the API key file was written, then chmodded."""
    [host] = netfleet(1, agents=False).hosts
    data = host.work / "up"
    env = {"TTSTACK_DATA_DIR": str(data), "TTSTACK_ENGINES": "docker", "TTSTACK_DOCKER_URL": host.docker_url,
           "TTSTACK_PUBLISH_ADDR": host.addr, "TTSTACK_HEARTBEAT": "1"}
    host.spawn("aux", [sys.executable, "-m", "ttproject.cli", "up", "--port", "9200", "--agent-port", "9100"],
               env=child_env(**env), log="up")
    wait_for(lambda: "ttstack is running" in host.log("up"), timeout=120, message="ttstack up")
    files = [data / "api_key", data / "secret_key", data / "controller.sqlite3", data / "agent" / "agent.sqlite3",
             data / "agent" / "secret_key"]
    modes = {str(p.relative_to(data.parent)): _mode(p) for p in [data, data / "agent", *files]}
    want = {str(p.relative_to(data.parent)): "0o700" for p in [data, data / "agent"]}
    want.update({str(p.relative_to(data.parent)): "0o600" for p in files})
    assert modes == want


# -------------------------------------------------------------------------------------------- admin


# ----------------------------------------------------------------------------------------- recovery


def _env_on(c, fleet, ids, host, body) -> dict:
    """Create `body` with every other host drained, so its VMs land on `host`."""
    others = [h for h in fleet.hosts if h is not host]
    for other in others:
        set_drain(c, ids[other.name], True)
    try:
        env = create_env(c, body)
    finally:
        for other in others:
            set_drain(c, ids[other.name], False)
    assert {vm["host"] for vm in env["vms"]} == {ids[host.name]}
    return env


def test_a_slow_host_does_not_delay_the_expiry_of_other_envs(netfleet, controller):
    """Before: retried deletes ran on the fleet loop's lease thread, each agent call with the 600 s create
    timeout: a VM left to delete on a host slowed by 30 s held the loop for a minute and more (connect after
    30 s, the answer after another 30 s), and envs on the healthy host expired that late."""
    fleet = netfleet(2)
    slow, healthy = fleet.hosts
    ctl = controller(env={"TTSTACK_HOST_TIMEOUT": "120", "TTSTACK_DELETE_RETRY": "1", "TTSTACK_CPU_OVERCOMMIT": "8"})
    with ctl.client() as c:
        ids = fleet.register(c)
        doomed = env_id("doomed")
        _env_on(c, fleet, ids, slow, env_body(doomed))
        names = [env_id("expiring") for _ in range(4)]
        set_drain(c, ids[slow.name], True)
        with ThreadPoolExecutor(4) as pool:  # lifetimes 35..38 s: four expiries one second apart
            envs = list(pool.map(lambda i: create_env(c, env_body(names[i], lifetime=35 + i)), range(4)))
        assert all(vm["host"] == ids[healthy.name] for env in envs for vm in env["vms"])
        slow.kill_agent()  # the delete job cannot reach the agent and leaves the VM to the fleet loop's retries
        reply = c.delete(f"/api/envs/{doomed}")
        assert wait_task(c, reply.json()["task"])["status"] == "failed"
        slow.slow(30)
        slow.start_agent(wait=False)  # back, behind a link slowed by 30 s
        deadline = {e["id"]: datetime.fromisoformat(e["expires_at"].replace("Z", "+00:00")).timestamp() for e in envs}
        lateness = {}
        while len(lateness) < len(names):
            for name in set(names) - set(lateness):
                reply = c.get(f"/api/envs/{name}")
                if reply.status_code == 404 or reply.json()["state"] == "deleting":
                    lateness[name] = time.time() - deadline[name]
            assert time.time() < max(deadline.values()) + 150, f"not expired: {set(names) - set(lateness)}"
            time.sleep(0.1)
    assert max(lateness.values()) <= 2, f"expired late by {sorted(round(v, 1) for v in lateness.values())} s"


def test_orphan_collection_leaves_vms_it_did_not_make_alone(netfleet, controller):
    """Before: after TTSTACK_ORPHAN_GRACE the controller destroyed every VM on its agents it did not know,
    including one made directly on the agent and one made by another controller."""
    fleet = netfleet(1)
    [host] = fleet.hosts
    mine = controller(env={"TTSTACK_ORPHAN_GRACE": "2"})
    theirs = controller(env={"TTSTACK_ORPHAN_GRACE": "3600"})
    with mine.client() as c, theirs.client() as other, host.agent_client() as agent:
        [host_id] = fleet.register(c).values()
        fleet.register(other)
        direct = agent.post("/api/vms", json={"id": "made-by-hand", "image": "ttstack/tiny:latest", "engine": "docker",
                                              "cpu": 1, "mem": 64, "disk": 64, "ports": [], "ssh_keys": []})
        assert direct.status_code == 201, direct.text
        foreign = create_env(other, env_body(env_id("theirs")))["vms"][0]["id"]
        time.sleep(10)  # grace 2 s, heartbeat 1 s: plenty of rounds to destroy them
        assert agent.get("/api/vms/made-by-hand").status_code == 200
        assert agent.get(f"/api/vms/{foreign}").status_code == 200
        assert sorted(ct.status for ct in host.containers()) == ["running", "running"]
        reported = json.dumps(c.get(f"/api/hosts/{host_id}").json())
        assert "made-by-hand" in reported and foreign in reported, reported


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def test_a_worker_crash_inside_ttstack_controller_leaves_the_web_serving(netfleet, controller):
    """Before: the supervisor of `ttstack controller` stopped everything when its worker died."""
    fleet = netfleet(1)
    ctl = controller()
    with ctl.client() as c:
        fleet.register(c)
        [worker] = [p for p in _children(ctl.proc.pid)
                    if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")]
        os.kill(worker, signal.SIGKILL)
        time.sleep(5)
        assert ctl.proc.poll() is None, f"ttstack controller exited {ctl.proc.returncode}:\n{ctl.log()}"
        assert c.get("/api/health").status_code == 200
        assert create_env(c, env_body(env_id("after")), timeout=120)["state"] == "active"  # a worker again


# ---------------------------------------------------------------------------- found on the fleet too

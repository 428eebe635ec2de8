"""Acceptance of the agent with the docker engine: a real `ttstack agent` process and the real daemon."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest

from tests.agent.conftest import TINY, containers_of, docker_client
from tests.conftest import require, wait_for
from tests.fleet.helpers import ssh_key

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _docker():
    require("docker")


def http_get(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=3)
    except httpx.HTTPError:
        return None


def create(client, **body):
    body = {"engine": "docker", "image": TINY, "cpu": 1, "mem": 64, "disk": 100, **body}
    return client.post("/api/vms", json=body)


def host_id_of(server) -> str:
    return (server.data_dir / "host_id").read_text().strip()


def test_create_serves_http_stop_start_delete(agent_server):
    agent = agent_server()
    with agent.client() as c:
        reply = create(c, id="web-1", ports=[80], hostname="web-one")
        assert reply.status_code == 201, reply.text
        vm = reply.json()
        assert vm["state"] == "running" and vm["engine"] == "docker"
        assert vm["ports"] == [80]  # no 22 for docker
        assert set(vm["port_map"]) == {"80"}
        assert vm["publish_addr"] == "127.0.0.1"
        port = vm["port_map"]["80"]
        page = wait_for(lambda: http_get(port), timeout=30, message="HTTP through the published port")
        assert page.status_code == 200 and "web-one" in page.text

        assert c.get("/api/vms/web-1").json()["ip"]  # the container's address, filled in by GET
        (container,) = containers_of(host_id_of(agent))
        assert container.labels["ttstack.vm_id"] == "web-1"
        host_config = container.attrs["HostConfig"]
        assert host_config["NanoCpus"] == 1_000_000_000
        assert host_config["Memory"] == 64 * 1024 * 1024
        assert host_config["RestartPolicy"]["Name"] == "no"

        # the same create again: 200 with the same VM; different parameters: 409
        again = create(c, id="web-1", ports=[80], hostname="web-one")
        assert again.status_code == 200 and again.json()["port_map"] == vm["port_map"]
        clash = create(c, id="web-1", ports=[80, 81], hostname="web-one")
        assert clash.status_code == 409 and "ports" in clash.json()["detail"]

        info = c.get("/api/info").json()
        assert info["vm_count"] == 1 and info["resources"]["cpu_used"] == 1
        assert info["resources"]["mem_used"] == 64
        assert any(i["name"] == TINY and i["kind"] == "docker" for i in info["images"])

        stopped = c.post("/api/vms/web-1/stop")
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        assert http_get(port) is None
        assert c.get("/api/info").json()["resources"]["cpu_used"] == 0

        started = c.post("/api/vms/web-1/start")
        assert started.status_code == 200 and started.json()["state"] == "running"
        assert started.json()["port_map"] == vm["port_map"]
        wait_for(lambda: http_get(port), timeout=30, message="HTTP after start")

        assert c.delete("/api/vms/web-1").status_code == 204
        assert c.get("/api/vms/web-1").status_code == 404
        assert c.delete("/api/vms/web-1").json()["detail"]
        assert containers_of(host_id_of(agent)) == []
        assert c.get("/api/vms").json() == []


def test_env_keys_reach_a_container_without_sshd(agent_server):
    """An image that declares no sshd (tiny) still gets the env's keys at /root/.ssh/authorized_keys, from a
    0600 file of the VM's work dir, and they are there again after a stop and a start."""
    agent = agent_server()
    keys = [ssh_key("alice@laptop"), ssh_key("bob")]
    with agent.client() as c:
        assert create(c, id="keys-1", ssh_keys=keys).status_code == 201
        (container,) = containers_of(host_id_of(agent))

        def authorized_keys() -> str:
            code, out = container.exec_run(["cat", "/root/.ssh/authorized_keys"])
            assert code == 0, out
            return out.decode()

        assert authorized_keys().splitlines() == keys
        keys_file = agent.data_dir / "vms" / "keys-1" / "authorized_keys"
        assert keys_file.stat().st_mode & 0o777 == 0o600
        assert c.post("/api/vms/keys-1/stop").json()["state"] == "stopped"
        assert c.post("/api/vms/keys-1/start").json()["state"] == "running"
        assert authorized_keys().splitlines() == keys
        assert c.delete("/api/vms/keys-1").status_code == 204
        assert not keys_file.parent.exists()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"outside"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def outside_listener():
    """An HTTP listener on this machine's docker bridge gateway: 'outside' every container, still local."""
    network = docker_client().networks.get("bridge")
    gateway = network.attrs["IPAM"]["Config"][0].get("Gateway") or "172.17.0.1"
    server = http.server.ThreadingHTTPServer((gateway, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{gateway}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def reach(vm_id: str, host_id: str, url: str) -> tuple[int, str]:
    (container,) = [c for c in containers_of(host_id) if c.labels["ttstack.vm_id"] == vm_id]
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    # busybox nc (its static wget crashes resolving even an address)
    script = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {host} {port}'
    code, out = container.exec_run(["sh", "-c", script])
    return code, out.decode(errors="replace")


def test_deny_outgoing(agent_server, outside_listener):
    agent = agent_server()
    host_id = host_id_of(agent)
    with agent.client() as c:
        open_vm = create(c, id="open", ports=[80]).json()
        closed_vm = create(c, id="closed", ports=[80], deny_outgoing=True).json()
        assert closed_vm["deny_outgoing"] is True and closed_vm["state"] == "running"

        # control: without deny_outgoing the same connection succeeds
        code, out = reach("open", host_id, outside_listener)
        assert code == 0 and out.endswith("outside"), out
        # denied: the container cannot reach the listener outside it ...
        code, _ = reach("closed", host_id, outside_listener)
        assert code != 0
        # ... yet its published port answers
        for vm in (open_vm, closed_vm):
            page = wait_for(lambda vm=vm: http_get(vm["port_map"]["80"]), timeout=30, message="published port")
            assert page.status_code == 200

        # the rules live in the container's network namespace: they come back after stop/start
        assert c.post("/api/vms/closed/stop").json()["state"] == "stopped"
        assert c.post("/api/vms/closed/start").json()["state"] == "running"
        code, _ = reach("closed", host_id, outside_listener)
        assert code != 0
        wait_for(lambda: http_get(closed_vm["port_map"]["80"]), timeout=30, message="published port after start")


def test_kill_and_restart_keeps_vms(agent_server):
    agent = agent_server()
    with agent.client() as c:
        running = create(c, id="keep-running", ports=[80, 8080]).json()
        stopped = create(c, id="keep-stopped", ports=[80]).json()
        assert c.post("/api/vms/keep-stopped/stop").json()["state"] == "stopped"
        gone = create(c, id="will-vanish", ports=[80]).json()
    host_id = host_id_of(agent)
    agent.kill()
    # while the agent is down: one guest disappears, one orphan (labelled ours, no record) appears
    docker_client().containers.get(f"tt-{host_id[:8]}-will-vanish").remove(force=True)
    orphan = docker_client().containers.create(TINY, name=f"tt-{host_id[:8]}-orphan",
                                               labels={"ttstack.host_id": host_id, "ttstack.vm_id": "orphan"})
    agent.start()
    with agent.client() as c:
        vms = {vm["id"]: vm for vm in c.get("/api/vms").json()}
    assert set(vms) == {"keep-running", "keep-stopped", "will-vanish"}
    for before in (running, stopped):
        after = vms[before["id"]]
        assert after["port_map"] == before["port_map"]
        assert after["created_at"] == before["created_at"]
    assert vms["keep-running"]["state"] == "running"
    assert vms["keep-stopped"]["state"] == "stopped"
    assert vms["will-vanish"]["state"] == "failed" and vms["will-vanish"]["error"] == "guest disappeared"
    assert gone["port_map"]
    names = {ctr.name for ctr in containers_of(host_id)}
    assert orphan.name not in names, "the orphan was not destroyed"
    wait_for(lambda: http_get(running["port_map"]["80"]), timeout=30, message="HTTP after the agent restart")


def test_two_agents_share_docker(agent_server):
    first, second = agent_server(), agent_server()
    with first.client() as a, second.client() as b:
        assert a.get("/api/info").json()["host_id"] != b.get("/api/info").json()["host_id"]
        va = create(a, id="same", ports=[80], hostname="from-a").json()
        vb = create(b, id="same", ports=[80], hostname="from-b").json()
        assert va["state"] == vb["state"] == "running"
        assert va["port_map"]["80"] != vb["port_map"]["80"]
        assert [v["id"] for v in a.get("/api/vms").json()] == ["same"]
        assert "from-a" in wait_for(lambda: http_get(va["port_map"]["80"]), timeout=30).text
        assert "from-b" in wait_for(lambda: http_get(vb["port_map"]["80"]), timeout=30).text
    # a restart reconciles without taking the other agent's container for an orphan
    second.restart()
    with first.client() as a, second.client() as b:
        assert b.get("/api/vms/same").json()["state"] == "running"
        assert a.delete("/api/vms/same").status_code == 204
        assert b.get("/api/vms/same").json()["state"] == "running"
        assert "from-b" in wait_for(lambda: http_get(vb["port_map"]["80"]), timeout=30).text
    assert containers_of(host_id_of(first)) == []
    assert len(containers_of(host_id_of(second))) == 1

"""Ready means ready, on the agent: a docker VM of an sshd image (debian-12) publishes port 22, gets the env's
keys read-only and reports `ssh.ready` with its host keys' fingerprints only once sshd answers; a stop takes
readiness back, a start gives it again. The console route shows the guest's output."""

from __future__ import annotations

import stat
import subprocess

import pytest

from tests.conftest import wait_for
from tests.images.conftest import debian_docker_image, make_key, ssh  # noqa: F401 - the session fixture
from ttproject.sshkeys import KEY_TYPES

pytestmark = pytest.mark.timeout(600)


def keygen_scan(port: int) -> str:
    """ssh-keyscan's key lines for the port, one key type after the other (ttproject/sshkeys.py says why)."""
    return "".join(subprocess.run(["ssh-keyscan", "-t", kind, "-T", "10", "-p", str(port), "127.0.0.1"],
                                  capture_output=True, text=True, timeout=60).stdout for kind in KEY_TYPES).strip()


def keygen_fingerprints(port: int) -> list[str]:
    """The fingerprints of the keys on the port, as ssh-keyscan | ssh-keygen -l computes them (scanned again
    while it gets nothing: a guest under TCG on a busy machine may let one scan's 10 s pass)."""
    scan = wait_for(lambda: keygen_scan(port), timeout=120, interval=1, message=f"host keys on port {port}")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=scan, capture_output=True, text=True,
                            check=True).stdout
    return sorted({line.split()[1] for line in listed.splitlines()})


def wait_ready(client, vm_id: str) -> dict:
    return wait_for(lambda: (vm := client.get(f"/api/vms/{vm_id}").json())["ssh"]["ready"] and vm,
                    timeout=120, interval=0.5, message=f"{vm_id} ssh.ready")


def test_sshd_image_is_ready_with_its_host_keys(agent_server, debian_docker_image, tmp_path):  # noqa: F811
    key = make_key(tmp_path)
    agent = agent_server()
    with agent.client(timeout=120) as c:
        reply = c.post("/api/vms", json={"id": "deb-d", "image": "debian-12", "engine": "docker", "cpu": 1,
                                         "mem": 256, "ssh_keys": [key.with_suffix(".pub").read_text()]})
        assert reply.status_code == 201, reply.text
        vm = reply.json()
        # the image's label makes it an SSH guest; no disk was asked, none is reserved
        assert vm["ports"] == [22] and set(vm["port_map"]) == {"22"} and vm["disk"] == 0
        port = vm["port_map"]["22"]
        assert vm["ssh"]["port"] == port and vm["ssh"]["user"] == "root"

        vm = wait_ready(c, "deb-d")
        assert vm["ssh"]["ready_at"] and vm["ssh"]["host_key_fingerprints"]  # a first key makes it ready
        every_key = keygen_fingerprints(port)
        assert set(vm["ssh"]["host_key_fingerprints"]) <= set(every_key)
        vm = wait_for(lambda: (v := c.get("/api/vms/deb-d").json())["ssh"]["host_key_fingerprints"] == every_key
                      and v, timeout=30, message="the other key types' fingerprints added")
        assert ssh(port, key, "id -u").stdout.strip() == "0"
        keys_file = agent.data_dir / "vms" / "deb-d" / "authorized_keys"
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600

        console = c.get("/api/vms/deb-d/console", params={"lines": 20}).json()
        assert console["source"] == "docker logs" and "1 SSH key(s) installed" in console["text"]

        stopped = c.post("/api/vms/deb-d/stop").json()
        assert stopped["state"] == "stopped" and stopped["ssh"]["ready"] is False
        started = c.post("/api/vms/deb-d/start").json()
        assert started["state"] == "running" and started["ssh"]["ready"] is False
        assert set(wait_ready(c, "deb-d")["ssh"]["host_key_fingerprints"]) <= set(every_key)
        wait_for(lambda: c.get("/api/vms/deb-d").json()["ssh"]["host_key_fingerprints"] == every_key, timeout=30,
                 message="the same host keys after the start")
        assert c.delete("/api/vms/deb-d").status_code == 204


def test_vm_without_ssh_and_console_errors(agent_server):
    agent = agent_server()
    with agent.client() as c:
        vm = c.post("/api/vms", json={"id": "tiny-d", "image": "ttstack/tiny:latest", "engine": "docker",
                                      "cpu": 1, "mem": 64, "ports": [80]}).json()
        assert vm["ports"] == [80] and vm["ssh"] is None and vm["disk"] == 0
        assert c.get("/api/vms/tiny-d/console").json()["text"] == ""  # tiny prints nothing
        assert c.get("/api/vms/tiny-d/console", params={"lines": 0}).status_code == 400
        assert c.get("/api/vms/nope/console").status_code == 404
        assert c.delete("/api/vms/tiny-d").status_code == 204

"""Acceptance of the agent with the qemu engine: the tiny guest built by `ttstack image build tiny` boots
under libvirt through the agent API, takes the SSH key and hostname from the seed, survives stop/start, and
its writes never reach the base image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.agent.test_readiness import keygen_fingerprints, wait_ready
from tests.conftest import LIBVIRT_URI, ROOT, require, wait_for

pytestmark = pytest.mark.timeout(900)

SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]


@pytest.fixture
def qemu_agent(role_server):
    require("libvirt")
    # Not pytest's tmp_path: qemu runs as libvirt-qemu and must be able to traverse to the VM files.
    data_dir = Path(tempfile.mkdtemp(prefix="ttstack-agent-qemu-"))
    data_dir.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(TTSTACK_DATA_DIR=str(data_dir))
    build = subprocess.run([sys.executable, "-m", "ttproject.cli", "image", "build", "tiny"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (data_dir / "images" / "tiny" / "image.json").exists()
    server = None
    try:
        server = role_server("agent", data_dir=data_dir, env={"TTSTACK_ENGINES": "qemu", "TTSTACK_STOP_TIMEOUT": "20"})
        yield server
    finally:
        if server is not None:
            server.stop()
        host_id = (data_dir / "host_id").read_text().strip() if (data_dir / "host_id").exists() else ""
        if host_id:
            import libvirt

            conn = libvirt.open(LIBVIRT_URI)
            for dom in conn.listAllDomains(0):
                if dom.name().startswith(f"tt-{host_id[:8]}-"):
                    with contextlib.suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.undefine()
            conn.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ssh(port: int, key: Path, command: str) -> subprocess.CompletedProcess:
    argv = ["ssh", "-i", str(key), "-p", str(port), *SSH_OPTS, "root@127.0.0.1", command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 255, "", f"timeout: {exc}")


def wait_ssh(port: int, key: Path, vm_dir: Path) -> None:
    def ok():
        return ssh(port, key, "true").returncode == 0

    try:
        wait_for(ok, timeout=180, interval=1, message=f"SSH on 127.0.0.1:{port}")
    except AssertionError as exc:
        console = vm_dir / "console.log"
        tail = console.read_text(errors="replace")[-3000:] if console.exists() else "(no console log)"
        raise AssertionError(f"{exc}\nconsole:\n{tail}") from None


def test_tiny_guest_through_the_agent(qemu_agent, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "agent-test", "-f", str(key)], check=True)
    base = qemu_agent.data_dir / "images" / "tiny" / "disk.qcow2"
    base_sum = sha256(base)
    with qemu_agent.client(timeout=300) as c:
        images = {i["name"]: i for i in c.get("/api/images").json()}
        assert images["tiny"]["kind"] == "disk" and "qemu" in images["tiny"]["engines"]

        started = time.monotonic()
        reply = c.post("/api/vms", json={"id": "tiny-1", "image": "tiny", "engine": "qemu", "cpu": 1, "mem": 256,
                                         "disk": 512, "hostname": "tiny-host",
                                         "ssh_keys": [key.with_suffix(".pub").read_text()]})
        assert reply.status_code == 201, reply.text
        vm = reply.json()
        assert vm["state"] == "running" and vm["ports"] == [22] and set(vm["port_map"]) == {"22"}
        port = vm["port_map"]["22"]
        vm_dir = qemu_agent.data_dir / "vms" / "tiny-1"
        wait_ssh(port, key, vm_dir)
        print(f"SSH answered {time.monotonic() - started:.1f} s after create")
        # the agent saw it too: ready, with the guest's host keys (dropbear's)
        first = wait_ready(c, "tiny-1")["ssh"]["host_key_fingerprints"]  # the first key type found
        every_key = keygen_fingerprints(port)
        assert first and set(first) <= set(every_key)
        wait_for(lambda: c.get("/api/vms/tiny-1").json()["ssh"]["host_key_fingerprints"] == every_key,
                 timeout=60, message="the guest's other host keys added")
        console = c.get("/api/vms/tiny-1/console").json()
        assert console["source"] == "console.log" and "ttstack-tiny:" in console["text"]
        result = ssh(port, key, "hostname")
        assert result.returncode == 0 and result.stdout.strip() == "tiny-host", result

        # the guest writes all over its disk; the base must not change
        wrote = ssh(port, key, "dd if=/dev/urandom of=/dev/vda bs=1M count=8 && sync && echo done")
        assert "done" in wrote.stdout, wrote
        assert sha256(base) == base_sum
        overlay = vm_dir / "disk.qcow2"
        assert overlay.stat().st_size > 8 * 1024 * 1024

        info = c.get("/api/info").json()
        assert info["resources"]["mem_used"] == 256 and info["resources"]["disk_used"] == 512

        stopped = c.post("/api/vms/tiny-1/stop")
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        assert stopped.json()["ssh"]["ready"] is False
        assert c.get("/api/vms/tiny-1").json()["state"] == "stopped"
        assert ssh(port, key, "true").returncode != 0

        again = c.post("/api/vms/tiny-1/start")
        assert again.status_code == 200 and again.json()["state"] == "running"
        assert again.json()["port_map"] == vm["port_map"]
        wait_ssh(port, key, vm_dir)
        wait_ready(c, "tiny-1")
        assert ssh(port, key, "hostname").stdout.strip() == "tiny-host"

        assert c.delete("/api/vms/tiny-1").status_code == 204
        assert c.get("/api/vms/tiny-1").status_code == 404
        assert not vm_dir.exists()
        assert sha256(base) == base_sum

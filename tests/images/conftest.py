"""Fixtures of the image tests: the debian-12 images (from the build cache; built there first when missing,
which takes minutes), a real agent with the qemu engine, real SSH keys, and cleanup of what they made."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import LIBVIRT_URI, ROOT, require

SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
# A Debian guest under TCG on a busy 2-core machine answers SSH after one to three minutes.
SSH_WAIT = 600
BUILD_TIMEOUT = 1800
CONTAINER_PREFIX = "tti-"


def ssh(port: int, key: Path, command: str, user: str = "root", timeout: float = 120) -> subprocess.CompletedProcess:
    argv = ["ssh", "-i", str(key), "-p", str(port), *SSH_OPTS, f"{user}@127.0.0.1", command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 255, "", f"timeout: {exc}")


def wait_ssh(port: int, key: Path, console: Path | None = None, user: str = "root",
             timeout: float = SSH_WAIT, refused_grace: float = 240) -> float:
    """Seconds until ``ssh ... true`` succeeds; the console's tail in the failure otherwise.

    sshd starts after cloud-init has installed the keys, so a key still refused ``refused_grace`` seconds
    after sshd first answered will not be accepted later: give up then rather than at ``timeout``.
    """
    started = time.monotonic()
    refused_since = None
    last = None
    while time.monotonic() - started < timeout:
        last = ssh(port, key, "true", user=user, timeout=30)
        if last.returncode == 0:
            return time.monotonic() - started
        if "Permission denied" in last.stderr:
            refused_since = refused_since or time.monotonic()
            if time.monotonic() - refused_since > refused_grace:
                break
        time.sleep(2)
    tail = console.read_text(errors="replace")[-4000:] if console and console.exists() else "(no console log)"
    raise AssertionError(f"no SSH as {user} on 127.0.0.1:{port} after {time.monotonic() - started:.0f} s: "
                         f"{last.stderr!r}\nconsole:\n{tail}")


def make_key(directory: Path, name: str = "id_ed25519") -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"images-test-{name}", "-f", str(key)],
                   check=True)
    return key


@pytest.fixture
def ssh_key(tmp_path) -> Path:
    """A real ed25519 key pair (private key path; ``.pub`` beside it)."""
    return make_key(tmp_path)


def build_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`ttstack image build ...` as a user runs it (the build cache is the default, shared one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["TTSTACK_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "-m", "ttproject.cli", "image", "build", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture
def agent_data_dir():
    # Not pytest's tmp_path: qemu runs as libvirt-qemu and must be able to traverse to the VM files.
    data_dir = Path(tempfile.mkdtemp(prefix="tti-agent-"))
    data_dir.chmod(0o755)
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


def remove_domains_of(data_dir: Path) -> None:
    """Every libvirt domain the agent of data_dir made (its names start with tt-<host id[:8]>-)."""
    host_id = (data_dir / "host_id").read_text().strip() if (data_dir / "host_id").exists() else ""
    if not host_id:
        return
    import libvirt

    conn = libvirt.open(LIBVIRT_URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(f"tt-{host_id[:8]}-"):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
    finally:
        conn.close()


@pytest.fixture
def debian_agent(role_server, agent_data_dir):
    """A real `ttstack agent` (qemu engine only) whose image directory holds debian-12 from the cache."""
    require("libvirt")
    build_cli(agent_data_dir, "debian-12", "--engine", "qemu")
    server = None
    try:
        server = role_server("agent", data_dir=agent_data_dir,
                             env={"TTSTACK_ENGINES": "qemu", "TTSTACK_STOP_TIMEOUT": "30"})
        yield server
    finally:
        if server is not None:
            server.stop()
        remove_domains_of(agent_data_dir)


@pytest.fixture(scope="session")
def debian_docker_image():
    """debian-12:latest in the docker daemon (imported from the cache; built there first when missing)."""
    require("docker")
    from agent.imagebuild import debian_docker

    return debian_docker.build(log=lambda _line: None)


@pytest.fixture
def containers():
    """The docker client; every container named tti-* made through it is removed afterwards."""
    require("docker")
    import docker

    client = docker.from_env(timeout=120)
    yield client
    for container in client.containers.list(all=True, filters={"name": CONTAINER_PREFIX}):
        if container.name.startswith(CONTAINER_PREFIX):
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)
    client.close()

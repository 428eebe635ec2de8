"""debian-12 for docker, for real: a container run the way the contract says (docs/images.md) answers SSH
with the given key, for root and the default user; its host keys are made once and kept."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from agent.imagebuild import debian_docker
from tests.conftest import free_port
from tests.images.conftest import CONTAINER_PREFIX, make_key, ssh

pytestmark = pytest.mark.timeout(1800)
SSH_WAIT = 60


def run_container(client, image: str, port: int, **kwargs):
    return client.containers.run(image, detach=True, name=f"{CONTAINER_PREFIX}{uuid.uuid4().hex[:10]}",
                                 hostname="dock-host", ports={"22/tcp": ("127.0.0.1", port)}, **kwargs)


def wait_login(port: int, key, container) -> None:
    deadline = time.monotonic() + SSH_WAIT
    while time.monotonic() < deadline:
        if ssh(port, key, "true", timeout=20).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"no SSH on {port}; logs:\n{container.logs().decode(errors='replace')[-3000:]}")


def host_key(port: int) -> str:
    out = subprocess.run(["ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=30).stdout
    return out.split()[-1]


def test_the_image_carries_its_contract(debian_docker_image, containers):
    image = containers.images.get(debian_docker_image)
    assert debian_docker_image == "debian-12:latest" and debian_docker.TAG in image.tags
    config = image.attrs["Config"]
    assert config["Entrypoint"] == [debian_docker.ENTRY]
    assert "22/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    assert labels["io.ttstack.ssh-port"] == "22"
    assert labels["io.ttstack.ssh-keys"] == "/run/ttstack/authorized_keys"
    assert labels["io.ttstack.default-user"] == "debian"
    assert (labels["io.ttstack.os"], labels["io.ttstack.version"]) == ("debian", "12")
    assert labels["io.ttstack.build-key"] == debian_docker.cache_entry().name.rsplit("-", 1)[-1]


def test_keys_from_the_mounted_file(debian_docker_image, containers, tmp_path, ssh_key):
    keys = tmp_path / "authorized_keys"
    keys.write_text(ssh_key.with_suffix(".pub").read_text())
    keys.chmod(0o644)
    port = free_port()
    container = run_container(containers, debian_docker_image, port,
                              volumes={str(keys): {"bind": "/run/ttstack/authorized_keys", "mode": "ro"}})
    wait_login(port, ssh_key, container)
    out = ssh(port, ssh_key, "hostname; id -u; . /etc/os-release; echo $VERSION_ID")
    assert out.stdout.split() == ["dock-host", "0", "12"], out
    as_user = ssh(port, ssh_key, "id -un; sudo -n id -u", user="debian")
    assert as_user.stdout.split() == ["debian", "0"], as_user
    assert ssh(port, make_key(tmp_path, "stranger"), "true").returncode != 0

    # host keys are made on the first start and kept across a restart
    first = host_key(port)
    container.restart(timeout=10)
    wait_login(port, ssh_key, container)
    assert host_key(port) == first
    # sshd is PID 1 and ends on docker stop's SIGTERM: not killed (exit 137) when the grace runs out
    container.stop(timeout=30)
    container.reload()
    assert container.attrs["State"]["ExitCode"] != 137


def test_keys_from_the_environment(debian_docker_image, containers, tmp_path):
    first, second = make_key(tmp_path, "one"), make_key(tmp_path, "two")
    both = first.with_suffix(".pub").read_text() + second.with_suffix(".pub").read_text()
    port = free_port()
    container = run_container(containers, debian_docker_image, port, environment={"TTSTACK_SSH_KEYS": both})
    wait_login(port, first, container)
    assert ssh(port, second, "true", user="debian").returncode == 0
    assert "2 SSH key(s) installed" in container.logs().decode()


def test_no_keys_means_no_login(debian_docker_image, containers, ssh_key):
    port = free_port()
    container = run_container(containers, debian_docker_image, port)
    deadline = time.monotonic() + SSH_WAIT
    while "Server listening" not in container.logs().decode() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Server listening" in container.logs().decode()
    assert ssh(port, ssh_key, "true").returncode != 0

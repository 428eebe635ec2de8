"""debian-12 for qemu, for real: the image from the build cache boots under libvirt through a real agent,
and cloud-init applies the agent's seed: root and the default user log in with the env's key, the hostname
is the VM's, the root filesystem has grown to the VM's disk."""

from __future__ import annotations

import time

import pytest

from tests.images.conftest import make_key, ssh, wait_ssh

pytestmark = pytest.mark.timeout(1800)

DISK_MIB = 4096


def test_debian_12_boots_through_the_agent(debian_agent, ssh_key):
    pub = ssh_key.with_suffix(".pub").read_text()
    with debian_agent.client(timeout=600) as c:
        images = {i["name"]: i for i in c.get("/api/images").json()}
        assert images["debian-12"]["kind"] == "disk" and "qemu" in images["debian-12"]["engines"]
        assert "Debian 12" in images["debian-12"]["description"]

        started = time.monotonic()
        reply = c.post("/api/vms", json={"id": "deb-1", "image": "debian-12", "engine": "qemu", "cpu": 1,
                                         "mem": 1024, "disk": DISK_MIB, "hostname": "deb-host",
                                         "ssh_keys": [pub]})
        assert reply.status_code == 201, reply.text
        vm = reply.json()
        assert vm["state"] == "running" and vm["ports"] == [22]
        port = vm["port_map"]["22"]
        console = debian_agent.data_dir / "vms" / "deb-1" / "console.log"

        wait_ssh(port, ssh_key, console)
        print(f"\ndebian-12 through the agent: POST /api/vms to SSH login as root {time.monotonic() - started:.1f} s")

        done = ssh(port, ssh_key, "cloud-init status --wait", timeout=600)
        assert done.returncode == 0 and "status: done" in done.stdout, done.stdout + done.stderr
        print(f"debian-12 through the agent: cloud-init done {time.monotonic() - started:.1f} s after POST")

        assert ssh(port, ssh_key, "hostname").stdout.strip() == "deb-host"
        size_mib = int(ssh(port, ssh_key, "df --output=size -m / | tail -1").stdout)
        # the 2 GiB image grew to the asked disk: partition 1 from 1 MiB to the end, less ext4's own metadata
        assert DISK_MIB * 0.95 <= size_mib <= DISK_MIB, size_mib
        assert ssh(port, ssh_key, "findmnt -n -o SOURCE /").stdout.strip() == "/dev/vda1"

        # the default user has the same key and sudo without a password
        as_user = ssh(port, ssh_key, "id -un; sudo -n id -u", user="debian")
        assert as_user.returncode == 0 and as_user.stdout.split() == ["debian", "0"], as_user

        # another key is refused
        other = make_key(ssh_key.parent, "other")
        assert ssh(port, other, "true").returncode != 0

        assert c.delete("/api/vms/deb-1").status_code == 204

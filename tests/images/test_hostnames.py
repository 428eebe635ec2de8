"""Hostnames that YAML 1.1 reads as something else (null, a boolean, a date) reach the guest unchanged:
real cloud-init in debian-12 reads the agent's seed, so the seed must keep them strings (agent/cloudinit.py
writes it with a YAML library). One VM at a time: three Debian boots at once under TCG starve each other."""

from __future__ import annotations

import pytest

from tests.images.conftest import ssh, wait_ssh

pytestmark = pytest.mark.timeout(1800)


@pytest.mark.parametrize("hostname", ["null", "yes", "2026-02-28"])
def test_yaml_lookalike_hostname_boots_as_given(debian_agent, ssh_key, hostname):
    with debian_agent.client(timeout=600) as c:
        reply = c.post("/api/vms", json={"id": "hn-1", "image": "debian-12", "engine": "qemu", "cpu": 1,
                                         "mem": 1024, "disk": 2048, "hostname": hostname,
                                         "ssh_keys": [ssh_key.with_suffix(".pub").read_text()]})
        assert reply.status_code == 201, reply.text
        port = reply.json()["port_map"]["22"]
        wait_ssh(port, ssh_key, debian_agent.data_dir / "vms" / "hn-1" / "console.log", timeout=900)
        # cloud-init sets the hostname in its init stage, before sshd starts
        out = ssh(port, ssh_key, "hostname; cat /etc/hostname")
        assert out.stdout.split() == [hostname, hostname], (out.stdout, out.stderr)
        assert c.delete("/api/vms/hn-1").status_code == 204

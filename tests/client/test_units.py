"""What the client reads from people before anything is sent: durations, sizes, VM specs, create bodies, and
where a VM's SSH is."""

from __future__ import annotations

import io

import click
import pytest

from ttproject.cli.envs import create_body
from ttproject.cli.units import format_duration, parse_duration, parse_size, parse_vm_spec
from ttproject.cli.vms import pick_vm, ssh_endpoint


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
                                           ("45s", 45), ("600", 600), ("0", 0), ("never", 0), ("1w", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2x", "h", "1.5h", "-1h", "1h 30m", "", "30mm"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (0, 59, 5400, 90061)] == ["0s", "59s", "1h30m", "1d1h"]


@pytest.mark.parametrize("text, mib", [("512M", 512), ("4G", 4096), ("1.5G", 1536), ("1024", 1024),
                                       ("2GiB", 2048), ("1T", 1048576), ("64 MiB", 64)])
def test_sizes_in_mib(text, mib):
    assert parse_size(text) == mib


@pytest.mark.parametrize("text", ["12Q", "0.3M", "0", "G", "-1G"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_vm_specs():
    assert parse_vm_spec("image=debian-12,engine=qemu,cpu=1,mem=1024,disk=4G,ports=80,443") == {
        "image": "debian-12", "engine": "qemu", "cpu": 1, "mem": 1024, "disk": 4096, "ports": [80, 443]}
    assert parse_vm_spec("ttstack/tiny:latest,engine=docker,deny_outgoing") == {
        "image": "ttstack/tiny:latest", "engine": "docker", "deny_outgoing": True}
    assert parse_vm_spec("tiny,ports=22+8080,deny-outgoing=no")["ports"] == [22, 8080]
    for bad, reason in (("cpu=1", "needs an image"), ("tiny,cpu=0", "cpu"), ("tiny,ports=99999", "port"),
                        ("tiny,colour=red", "unknown VM key"), ("tiny,mem=lots", "size"), ("tiny,x", "KEY=VALUE")):
        with pytest.raises(ValueError, match=reason):
            parse_vm_spec(bad)


def test_create_body_from_options_and_files(tmp_path):
    key = tmp_path / "k.pub"
    key.write_text("ssh-ed25519 AAAA me@laptop\n")
    vm = {"image": "tiny", "engine": "qemu"}
    body = create_body("demo", (vm,), 3, (str(key),), 5400, True, None, None)
    assert body == {"id": "demo", "vms": [{**vm, "deny_outgoing": True}] * 3, "lifetime": 5400,
                    "ssh_keys": ["ssh-ed25519 AAAA me@laptop"]}
    spec = io.StringIO("id: from-file\nssh_keys: [ssh-ed25519 BBBB]\nvms:\n  - image: tiny\nlifetime: 60\n")
    spec.name = "env.yaml"
    assert create_body(None, (), 2, (), None, False, "bob", spec) == {
        "id": "from-file", "ssh_keys": ["ssh-ed25519 BBBB"], "vms": [{"image": "tiny"}] * 2, "lifetime": 60,
        "owner": "bob"}
    spec = io.StringIO('{"vms": [{"image": "tiny"}], "ssh_keys": ["k"]}')
    spec.name = "-"
    assert create_body("named", (), 1, (), 0, False, None, spec)["id"] == "named"
    with pytest.raises(click.UsageError, match="not both"):
        create_body("x", (vm,), 1, (), None, False, None, io.StringIO("{}"))
    with pytest.raises(click.UsageError, match="at least one VM"):
        create_body("x", (), 1, (str(key),), None, False, None, None)


def test_ssh_endpoint_from_the_controller_or_port_map():
    reported = {"ssh": {"host": "10.0.0.5", "port": 2201, "user": "debian", "ready": True,
                        "host_key_fingerprints": ["SHA256:x"]}, "port_map": {"22": 20022}}
    endpoint = ssh_endpoint(reported)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.ready) == ("10.0.0.5", 2201, "debian", True)
    older = {"port_map": {"22": 20022, "80": 20080}, "publish_addr": "0.0.0.0", "host_addr": "10.0.0.2:9100"}
    endpoint = ssh_endpoint(older)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.ready) == ("10.0.0.2", 20022, "root", None)
    assert ssh_endpoint({**older, "publish_addr": "192.168.1.9"}).host == "192.168.1.9"
    assert ssh_endpoint({"port_map": {"80": 1}}).port is None


def test_pick_vm():
    env = {"id": "demo", "vms": [{"index": 0, "id": "demo-0", "hostname": "demo-0"},
                                 {"index": 1, "id": "demo-1", "hostname": "web"}]}
    assert pick_vm(env, "1")["id"] == pick_vm(env, "web")["id"] == pick_vm(env, "demo-1")["id"] == "demo-1"
    with pytest.raises(LookupError, match="has 2 VMs"):
        pick_vm(env, None)
    with pytest.raises(LookupError, match="no VM '7'"):
        pick_vm(env, "7")

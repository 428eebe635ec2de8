"""`ttstack env ssh demo/0 -- hostname` through a real controller to the qemu `tiny` guest (dropbear answers SSH
with the environment's key): it waits for the guest to answer, then runs the system ssh to it."""

from __future__ import annotations

import subprocess

import pytest

from tests.agent.test_agent_qemu import qemu_agent  # noqa: F401 - the fixture: a qemu agent with `tiny` built
from tests.agent.test_readiness import keygen_scan
from tests.conftest import wait_for
from ttproject.cli.errors import CliError
from ttproject.cli.output import parse_time
from ttproject.cli.ssh import pin_host_keys
from ttproject.cli.vms import SshEndpoint
from ttproject.sshkeys import keyscan_keys

pytestmark = pytest.mark.timeout(900)


def check_pinning(tmp_path, port: int):
    """With fingerprints from a controller (ssh.host_key_fingerprints), only the matching key is pinned, and
    a key that matches none is refused: checked against ssh-keygen's own fingerprints of the guest's keys."""
    scanned = wait_for(lambda: keygen_scan(port), timeout=120, interval=2, message="the guest's host keys")
    listed = subprocess.run(["ssh-keygen", "-lf", "-"], input=scanned, capture_output=True, text=True).stdout
    fingerprints = tuple(line.split()[1] for line in listed.splitlines())
    assert fingerprints and all(f.startswith("SHA256:") for f in fingerprints)
    # the scan made above, not a new one: a slow TCG guest may not finish a second round of key exchanges in
    # time, and the client's own scan was exercised by `env ssh` (its alias is in known_hosts)
    offered = keyscan_keys(scanned)
    known = tmp_path / "known_hosts"
    pin_host_keys(known, "vm-a.1.ttstack", SshEndpoint("127.0.0.1", port, "root", True, fingerprints[:1]), offered)
    [line] = known.read_text().splitlines()
    assert line.startswith("vm-a.1.ttstack ") and line.split()[2] in scanned
    with pytest.raises(CliError, match="does not match"):
        pin_host_keys(known, "vm-b.1.ttstack", SshEndpoint("127.0.0.1", port, "root", True, ("SHA256:forged",)),
                      offered)
    assert "vm-b" not in known.read_text()


def test_env_ssh_runs_the_command_in_the_vm(qemu_agent, role_server, cli, env_name, tmp_path):  # noqa: F811
    controller = role_server("controller")
    cli.ok("login", controller.url, "--token", controller.api_key)
    cli.ok("host", "add", qemu_agent.addr, "--key", qemu_agent.api_key)
    key = cli.keygen()
    name = env_name("demo")
    env = cli.json("env", "create", name, "--vm", "tiny,engine=qemu,cpu=1,mem=256M,disk=1G",
                   "--key", f"{key}.pub", "--lifetime", "30m", "--no-wait")
    try:
        ssh = ("-i", str(key), "--ssh-option", "BatchMode=yes", "--timeout", "4m")
        # right after the create was accepted: the client waits until the guest answers SSH
        done = cli.run("env", "ssh", f"{name}/0", *ssh, "--", "hostname", timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        [vm] = cli.json("env", "show", name)["vms"]
        assert vm["state"] == "running" and vm["hostname"]
        assert done.stdout.strip() == vm["hostname"]
        # the guest's key is remembered for this VM only, under its own alias (not under 127.0.0.1:PORT,
        # which a later VM may get); ssh may hash the names, so ask ssh-keygen
        known = cli.config_home / "ttstack" / "known_hosts"
        alias = f"{vm['id']}.{int(parse_time(vm['created_at']).timestamp())}.ttstack"
        port = vm["port_map"]["22"]
        assert subprocess.run(["ssh-keygen", "-F", alias, "-f", str(known)], capture_output=True).returncode == 0
        assert subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{port}", "-f", str(known)],
                              capture_output=True).returncode == 1
        # the remote command keeps its own options; the VM is the environment's only one, so NAME suffices
        done = cli.run("env", "ssh", name, *ssh, "--", "ls", "-d", "/etc", timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "/etc", done.stderr
        # the remote command's exit status is the client's
        assert cli.run("env", "ssh", name, *ssh, "--", "exit", "7", timeout=120).returncode == 7
        check_pinning(tmp_path, port)
        assert env["task"]
    finally:
        cli.run("env", "delete", name, timeout=300)

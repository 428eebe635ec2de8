"""`ttstack env ssh NAME[/VM] [-- CMD...]`: the system `ssh` to a VM, once the VM answers SSH.

Host keys: each VM gets its own alias in `$XDG_CONFIG_HOME/ttstack/known_hosts` (VM id + creation time), so
host ports reused by later VMs never clash with old keys. When the controller reports the VM's host key
fingerprints, the key offered on the port is checked against them before it is trusted
(StrictHostKeyChecking=yes); otherwise the first key seen is trusted for that VM (accept-new).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import click

from ttproject.sshkeys import fingerprint, keyscan, keyscan_keys, sends_banner

from . import completion
from .api import Api, segment
from .config import config_path
from .errors import EXIT_FAILED, EXIT_NOT_FOUND, CliError
from .output import parse_time
from .session import with_api
from .units import DURATION, format_duration
from .vms import SshEndpoint, pick_vm, ssh_endpoint, vm_name


def wait_ready(api: Api, env_id: str, ref: str | None, timeout: float) -> tuple[dict, SshEndpoint]:
    """The VM and its SSH endpoint once it is ready (the controller's word, or a banner on the port)."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        env = api.get(f"/api/envs/{segment(env_id)}")
        try:
            vm = pick_vm(env, ref)
        except LookupError as exc:
            raise CliError(str(exc), EXIT_NOT_FOUND) from exc
        if vm.get("state") == "failed" or env.get("state") == "failed":
            raise CliError(f"{vm_name(env_id, vm)} failed: {vm.get('error') or env.get('error') or 'no reason'}")
        if env.get("state") == "stopped":
            raise CliError(f"environment {env_id} is stopped (start it: ttstack env start {env_id})")
        endpoint = ssh_endpoint(vm)
        if endpoint.port is None and vm.get("state") == "running":
            raise CliError(f"{vm_name(env_id, vm)} publishes no SSH port (guest port 22)", EXIT_FAILED)
        if endpoint.port is not None and vm.get("state") == "running" and (
                endpoint.ready or (endpoint.ready is None and sends_banner(endpoint.host, endpoint.port))):
            return vm, endpoint
        if time.monotonic() >= deadline:
            raise CliError(f"{vm_name(env_id, vm)} did not answer SSH within {format_duration(timeout)} "
                           f"(state {vm.get('state')})")
        if not said:
            click.echo(f"waiting for {vm_name(env_id, vm)} to answer SSH...", err=True)
            said = True
        time.sleep(1)


def scan_host_keys(endpoint: SshEndpoint, attempts: int = 5) -> list[tuple[str, str]]:
    """(key type, base64 blob) of the keys offered on the port; a guest busy booting may not answer a
    first scan in time, so it is tried again."""
    for attempt in range(attempts):
        scan = keyscan(endpoint.host, endpoint.port, 30)
        keys = keyscan_keys(scan.output)
        if keys:
            return keys
        if attempt + 1 < attempts:
            time.sleep(2)
    raise CliError(f"{endpoint.host}:{endpoint.port} offered no SSH host key (ssh-keyscan: "
                   f"{scan.errors.strip()[-200:] or 'no answer'})")


def pin_host_keys(known_hosts: Path, alias: str, endpoint: SshEndpoint,
                  offered: list[tuple[str, str]] | None = None) -> None:
    """Write the keys the VM offers (scanned now unless `offered` holds a scan already made) that match the
    controller's fingerprints under `alias`."""
    wanted = set(endpoint.fingerprints)
    offered = scan_host_keys(endpoint) if offered is None else offered
    keys = [f"{alias} {kind} {blob}" for kind, blob in offered if fingerprint(blob) in wanted]
    if not keys:
        raise CliError(f"the host key on {endpoint.host}:{endpoint.port} does not match the fingerprints the "
                       f"controller reports ({', '.join(sorted(wanted))}); not connecting")
    old = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    kept = [line for line in old if line.split(" ", 1)[0] != alias]
    known_hosts.write_text("\n".join([*kept, *keys]) + "\n")


def ssh_argv(vm: dict, endpoint: SshEndpoint, user: str | None, identity: str | None, options: tuple,
             command: tuple) -> list[str]:
    known_hosts = config_path().parent / "known_hosts"
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = parse_time(vm.get("created_at"))
    alias = f"{vm.get('id')}.{int(created.timestamp()) if created else 0}.ttstack"
    if endpoint.fingerprints:
        pin_host_keys(known_hosts, alias, endpoint)
    argv = ["ssh", "-p", str(endpoint.port), "-o", f"HostKeyAlias={alias}", "-o",
            f"UserKnownHostsFile={known_hosts}", "-o",
            "StrictHostKeyChecking=" + ("yes" if endpoint.fingerprints else "accept-new")]
    if identity:
        argv += ["-i", identity]
    for option in options:
        argv += ["-o", option]
    # "--" before the destination: ssh must not read options from the remote command.
    return [*argv, "--", f"{user or endpoint.user}@{endpoint.host}", *command]


@click.command("ssh", short_help="SSH into a VM once it answers.", help="SSH into a VM (NAME, NAME/INDEX or NAME/VM-ID), once it answers: "
                           "ttstack env ssh demo/0 -- uname -a")
@click.argument("target", shell_complete=completion.env_vm_names)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-l", "--user", default=None, help="login name (default: the VM's, else root)")
@click.option("-i", "--identity", type=click.Path(exists=True, dir_okay=False), help="private key file")
@click.option("--ssh-option", "options", multiple=True, metavar="OPT", help="passed to ssh as -o OPT")
@click.option("--timeout", type=DURATION, default="5m", show_default=True, help="how long to wait for SSH")
@with_api
def ssh_command(api: Api, target, command, user, identity, options, timeout):
    env_id, _, ref = target.partition("/")
    vm, endpoint = wait_ready(api, env_id, ref or None, timeout)
    if not shutil.which("ssh"):
        raise CliError("no `ssh` command found: install the OpenSSH client")
    argv = ssh_argv(vm, endpoint, user, identity, options, command)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)

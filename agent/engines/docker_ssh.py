"""SSH in docker guests: which images run sshd (their labels, docs/images.md) and how the env's keys get in.

- ``io.ttstack.ssh-port=22``: the image runs sshd on that guest port; its VMs publish it like the VM engines
  and become ``ssh.ready`` the same way (agent/ssh_ready.py).
- ``io.ttstack.ssh-keys=PATH``: the image's entry reads the keys from that file at every start; the agent
  bind-mounts a 0600 file of the VM's work dir there, read-only.
- Images without these labels (ttstack/tiny) get the same file bind-mounted, writable, at
  ``/root/.ssh/authorized_keys`` (whether anything reads it is the image's business). A mount costs nothing
  at create; copying the file in (``put_archive``) was a quarter of a docker VM's create time with four
  creates at once on a host (bench/fleet_faults.py figure 4).
"""

from __future__ import annotations

import os

from agent.engines.base import EngineError, GuestSpec, Image

SSH_PORT_LABEL = "io.ttstack.ssh-port"
SSH_KEYS_LABEL = "io.ttstack.ssh-keys"
KEYS_FILE = "authorized_keys"  # in the VM's work dir
DEFAULT_KEYS_AT = "/root/.ssh/authorized_keys"


def _labels(image: Image) -> dict:
    return image.extra.get("labels") or {}


def ssh_ports(image: Image) -> set[int]:
    """{the sshd port} of an image that declares one, else empty."""
    port = str(_labels(image).get(SSH_PORT_LABEL, ""))
    return {int(port)} if port.isdigit() and 1 <= int(port) <= 65535 else set()


def keys_path(image: Image) -> str:
    """Where the image reads the env's keys from ("" when it does not say)."""
    path = str(_labels(image).get(SSH_KEYS_LABEL, ""))
    return path if path.startswith("/") else ""


def keys_binds(spec: GuestSpec) -> dict:
    """docker's `binds` giving the guest the env's keys ({} without keys, for an image that reads none)."""
    target = keys_path(spec.image)
    if target:
        return keys_bind(spec, target)
    if not spec.ssh_keys:
        return {}
    return keys_bind(spec, DEFAULT_KEYS_AT, mode="rw")  # the guest's own file: it may add keys


def keys_bind(spec: GuestSpec, target: str, mode: str = "ro") -> dict:
    """The env's keys in a 0600 file of the work dir, as docker's `binds` mounting it at `target`."""
    if not spec.workdir:
        raise EngineError(f"{spec.name}: no work dir for the SSH keys file")
    path = spec.workdir / KEYS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{key}\n" for key in spec.ssh_keys))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return {str(path): {"bind": target, "mode": mode}}

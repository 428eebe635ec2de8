"""SSH in docker guests: which images run sshd (their labels, docs/images.md) and how the env's keys get in.

- ``io.ttstack.ssh-port=22``: the image runs sshd on that guest port; its VMs publish it like the VM engines
  and become ``ssh.ready`` the same way (agent/ssh_ready.py).
- ``io.ttstack.ssh-keys=PATH``: the image's entry reads the keys from that file at every start; the agent
  bind-mounts a 0600 file of the VM's work dir there, read-only.
- Images without these labels (ttstack/tiny) get the keys written to ``/root/.ssh/authorized_keys`` before
  the start, best effort (whether anything reads them is the image's business).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import time

from agent.engines.base import EngineError, GuestSpec, Image

log = logging.getLogger(__name__)

SSH_PORT_LABEL = "io.ttstack.ssh-port"
SSH_KEYS_LABEL = "io.ttstack.ssh-keys"
KEYS_FILE = "authorized_keys"  # in the VM's work dir


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


def keys_bind(spec: GuestSpec, target: str) -> dict:
    """The env's keys in a 0600 file of the work dir, as docker's `binds` mounting it read-only at `target`."""
    if not spec.workdir:
        raise EngineError(f"{spec.name}: no work dir for the SSH keys file")
    path = spec.workdir / KEYS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{key}\n" for key in spec.ssh_keys))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return {str(path): {"bind": target, "mode": "ro"}}


def put_ssh_keys(api, container_id: str, keys: list[str]) -> None:
    """Best effort: /root/.ssh/authorized_keys inside a created container (images without sshd ignore it)."""
    import docker

    data = ("\n".join(keys) + "\n").encode()
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, mode in (("root", 0o700), ("root/.ssh", 0o700)):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)
        info = tarfile.TarInfo("root/.ssh/authorized_keys")
        info.size, info.mode, info.mtime = len(data), 0o600, now
        tar.addfile(info, io.BytesIO(data))
    try:
        api.put_archive(container_id, "/", buf.getvalue())
    except docker.errors.DockerException as exc:
        log.warning("docker: could not write SSH keys into %s: %s", container_id[:12], exc)

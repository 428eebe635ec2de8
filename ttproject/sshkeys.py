"""SSH host keys as `ssh-keyscan` prints them and as `ssh-keygen -l` names them (SHA256 fingerprints), and
where a published SSH port is reached.

Shared by the client (pinning a VM's host key), the agent (its readiness watcher reports the fingerprints of
the keys a guest offers) and the controller (the `ssh` of its VMs), so all three read them the same way.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
from dataclasses import dataclass

BANNER_TIMEOUT = 3.0
# One `ssh-keyscan -t TYPE` after the other: with all types at once, keyscan's parallel connections often get
# nothing at all from dropbear behind QEMU's user network (measured: 0 of 4 scans with keys, while
# `-t ed25519` alone got the key every time). A type the server lacks fails its key exchange at once.
KEY_TYPES = ("ed25519", "ecdsa", "rsa")


@dataclass(frozen=True)
class Scan:
    output: str  # the key lines, as ssh-keyscan prints them
    errors: str  # what ssh-keyscan wrote to stderr


def keyscan(host: str, port: int, timeout: float, kinds: tuple[str, ...] = KEY_TYPES) -> Scan:
    """The host keys of `kinds` offered on host:port, by ssh-keyscan (each type waited for up to `timeout` s)."""
    output, errors = [], []
    for kind in kinds:
        try:
            scan = subprocess.run(["ssh-keyscan", "-t", kind, "-T", str(int(timeout)), "-p", str(port), host],
                                  capture_output=True, text=True, timeout=timeout * 3)
        except subprocess.TimeoutExpired:
            errors.append(f"ssh-keyscan -t {kind}: no answer within {timeout * 3:.0f} s")
            continue
        output.append(scan.stdout)
        errors.append(scan.stderr)
    return Scan("".join(output), "".join(errors))


def fingerprint(blob_b64: str) -> str:
    """`SHA256:...` of a base64 key blob, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def sends_banner(host: str, port: int, timeout: float = BANNER_TIMEOUT) -> bool:
    """True when host:port sends an SSH banner. (A connect alone proves nothing: docker-proxy and QEMU's user
    network accept on the host port before anything listens in the guest, then close the connection.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(255).startswith(b"SSH-")
    except OSError:
        return False


def keyscan_keys(output: str) -> list[tuple[str, str]]:
    """(key type, base64 blob) of each key line of `ssh-keyscan`'s output."""
    return [(parts[1], parts[2]) for line in output.splitlines()
            if not line.startswith("#") and len(parts := line.split()) >= 3]


# Publish addresses meaning "every address of the host": connect to the host itself instead.
UNSPECIFIED_ADDRS = ("", "0.0.0.0", "::", "[::]")


def host_of(addr: str | None) -> str:
    """The host part of `host:port`, `[v6]:port` or `http://host:port`."""
    if not addr:
        return ""
    addr = addr.split("://", 1)[-1].rstrip("/")
    host = addr.rsplit(":", 1)[0] if addr.count(":") == 1 or addr.startswith("[") else addr
    return host.strip("[]")


def connect_host(publish_addr: str, host_addr: str | None) -> str:
    """Where a port published on `publish_addr` by the agent at `host_addr` is reached."""
    return publish_addr if publish_addr not in UNSPECIFIED_ADDRS else host_of(host_addr)

"""SSH host keys as `ssh-keyscan` prints them and as `ssh-keygen -l` names them (SHA256 fingerprints).

Shared by the client (pinning a VM's host key) and the agent (the readiness watcher reports the fingerprints
of the keys a guest offers), so both read ssh-keyscan's output the same way.
"""

from __future__ import annotations

import base64
import hashlib


def fingerprint(blob_b64: str) -> str:
    """`SHA256:...` of a base64 key blob, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def keyscan_keys(output: str) -> list[tuple[str, str]]:
    """(key type, base64 blob) of each key line of `ssh-keyscan`'s output."""
    return [(parts[1], parts[2]) for line in output.splitlines()
            if not line.startswith("#") and len(parts := line.split()) >= 3]

"""The words controller, agent and client share: engine and storage names, limits, name patterns.

Each fact here is defined once; the apps import it instead of repeating it. Patterns end in `\\Z`, not `$`
(which also matches before a trailing newline).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Engines of the fleet API (the contract's order). VM engines boot a disk: they get port 22, a disk and a
# cloud-init seed; the others (docker, jail) run a root filesystem.
ENGINES = ("qemu", "firecracker", "docker", "bhyve", "jail")
VM_ENGINES = ("qemu", "firecracker", "bhyve")
DEFAULT_ENGINE = "qemu"

# The three roles and the port each listens on by default.
DEFAULT_PORTS = {"controller": 9200, "agent": 9100, "localvm": 8000}

# Storage backends and their aliases (contract: "file" alias "raw", "zvol" alias "zfs").
STORAGE_ALIASES = {"file": "file", "raw": "file", "zvol": "zvol", "zfs": "zvol"}

# TTstack's limits.
MAX_PORTS_PER_VM = 256
MAX_NAME_LENGTH = 128

# Environment and VM names: TTstack's [A-Za-z0-9._-], at most 128, no leading dot.
NAME_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
NAME_RE = re.compile(NAME_PATTERN + r"\Z")
# A hostname is one RFC 1123 label: letters, digits and '-', 1-63, not starting or ending with '-'.
HOSTNAME_PATTERN = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(HOSTNAME_PATTERN + r"\Z")


def default_data_dir() -> Path:
    """/var/lib/ttstack for root (qemu runs as libvirt-qemu and cannot enter /root), else ~/.ttstack."""
    return Path("/var/lib/ttstack") if os.geteuid() == 0 else Path.home() / ".ttstack"


def normalise_storage(name: str) -> str:
    """The storage backend an alias means; unknown names are returned as given (callers refuse them)."""
    raw = (name or "file").strip().lower() or "file"
    return STORAGE_ALIASES.get(raw, raw)

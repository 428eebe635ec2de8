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
# Engines that give the VMs of one environment a private network on their host (docs/networks.md).
ENGINES_WITH_NETWORKS = ("docker", "qemu")

# The three roles and the port each listens on by default.
DEFAULT_PORTS = {"controller": 9200, "agent": 9100, "localvm": 8000}

# Storage backends and their aliases (contract: "file" alias "raw", "zvol" alias "zfs").
STORAGE_ALIASES = {"file": "file", "raw": "file", "zvol": "zvol", "zfs": "zvol"}

# TTstack's limits.
MAX_PORTS_PER_VM = 256
MAX_NAME_LENGTH = 128
# The least memory (MiB) a VM may ask for: a container (docker refuses limits below 6 MiB) or a jail; a guest
# of a VM engine boots a kernel and its init (the tiny image needs ~48).
MIN_MEM_MIB = 16
MIN_VM_MEM_MIB = 64
MIN_MEM_MESSAGE = f"at least {MIN_MEM_MIB} MiB ({MIN_VM_MEM_MIB} MiB for {', '.join(VM_ENGINES)})"

# Environment and VM names: TTstack's [A-Za-z0-9._-], at most 128, no leading dot.
NAME_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
NAME_RE = re.compile(NAME_PATTERN + r"\Z")
# A hostname is one RFC 1123 label: letters, digits and '-', 1-63, not starting or ending with '-'.
HOSTNAME_PATTERN = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(HOSTNAME_PATTERN + r"\Z")


def default_data_dir() -> Path:
    """/var/lib/ttstack for root (qemu runs as libvirt-qemu and cannot enter /root), else ~/.ttstack."""
    return Path("/var/lib/ttstack") if os.geteuid() == 0 else Path.home() / ".ttstack"


# Disk reserved for a VM whose request names none: the VM engines' own disk; docker nothing (TTstack
# reserves no disk for containers; their writes go to the daemon's storage, uncapped).
DEFAULT_DISK_MIB = 40960


def default_disk(engine: str) -> int:
    return 0 if engine == "docker" else DEFAULT_DISK_MIB


def too_little_disk(engine: str, disk: int) -> str | None:
    """Why `disk` MiB is refused (0 means none, which only docker takes), or None."""
    return None if disk >= 1 or engine == "docker" else "at least 1 MiB (0, no disk, is for docker VMs only)"


def too_little_mem(engine: str, mem: int) -> str | None:
    """Why `mem` MiB is refused for a VM of `engine` (the controller and the agent say the same), or None."""
    if mem < MIN_MEM_MIB:
        return MIN_MEM_MESSAGE
    if engine in VM_ENGINES and mem < MIN_VM_MEM_MIB:
        return f"at least {MIN_VM_MEM_MIB} MiB for the {engine} engine (a guest kernel)"
    return None


def normalise_storage(name: str) -> str:
    """The storage backend an alias means; unknown names are returned as given (callers refuse them)."""
    raw = (name or "file").strip().lower() or "file"
    return STORAGE_ALIASES.get(raw, raw)

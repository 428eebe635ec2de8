"""Settings of the agent app, read from the environment when first used.

TTSTACK_IMAGE_DIR      image directory (default DATA_DIR/images); layout in agent/engines/base.py `Image`
TTSTACK_STORAGE        file (alias raw) | zvol (alias zfs; refused at start when zfs does not work). Default file.
TTSTACK_PUBLISH_ADDR   host address guest ports are published on (default 0.0.0.0; tests use 127.0.0.1)
TTSTACK_PORT_RANGE     host ports handed to guests, "LOW-HIGH" (default 20000-65535)
TTSTACK_DOCKER_URL     docker daemon (default: DOCKER_HOST or the local socket)
TTSTACK_LIBVIRT_URI    libvirt connection of the qemu engine (default qemu:///system)
TTSTACK_QEMU_ACCEL     auto (probe KVM, else TCG) | kvm | tcg (default auto)
TTSTACK_STOP_TIMEOUT   seconds a graceful stop may take before the guest is forced off (default 30)
TTSTACK_ENGINES        optional comma list restricting the engines this agent offers (default: all that probe)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

MAX_PORTS_PER_VM = 256
ENGINE_NAMES = ("qemu", "docker", "firecracker", "bhyve", "jail")
VM_ENGINES = ("qemu", "firecracker", "bhyve")  # disk-booting engines: port 22, a disk and a seed
STORAGE_ALIASES = {"file": "file", "raw": "file", "zvol": "zvol", "zfs": "zvol"}


def data_dir() -> Path:
    return Path(settings.DATA_DIR)


def image_dir() -> Path:
    return Path(os.environ.get("TTSTACK_IMAGE_DIR") or data_dir() / "images").expanduser()


def vms_dir() -> Path:
    """Per-VM work directories: DATA_DIR/vms/<id> (overlay disk, seed, console log)."""
    return data_dir() / "vms"


def storage_name() -> str:
    raw = os.environ.get("TTSTACK_STORAGE", "file").strip().lower() or "file"
    return STORAGE_ALIASES.get(raw, raw)


def publish_addr() -> str:
    return os.environ.get("TTSTACK_PUBLISH_ADDR", "0.0.0.0")


def port_range() -> tuple[int, int]:
    text = os.environ.get("TTSTACK_PORT_RANGE", "20000-65535")
    try:
        low, high = (int(p) for p in text.split("-", 1))
    except ValueError as exc:
        raise ValueError(f"TTSTACK_PORT_RANGE must be LOW-HIGH, not {text!r}") from exc
    if not (1 <= low <= high <= 65535):
        raise ValueError(f"TTSTACK_PORT_RANGE {text!r} is not within 1-65535")
    return low, high


def docker_url() -> str | None:
    return os.environ.get("TTSTACK_DOCKER_URL") or None


def libvirt_uri() -> str:
    return os.environ.get("TTSTACK_LIBVIRT_URI", "qemu:///system")


def qemu_accel() -> str:
    return os.environ.get("TTSTACK_QEMU_ACCEL", "auto")


def stop_timeout() -> float:
    return float(os.environ.get("TTSTACK_STOP_TIMEOUT", "30"))


def enabled_engines() -> tuple[str, ...]:
    text = os.environ.get("TTSTACK_ENGINES", "").strip()
    if not text:
        return ENGINE_NAMES
    return tuple(e.strip() for e in text.split(",") if e.strip())


def host_id() -> str:
    """A stable id of this agent, kept in DATA_DIR/host_id (created on first use)."""
    path = data_dir() / "host_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def guest_name(vm_id: str) -> str:
    """Engine object name: unique per agent so two agents can share one docker daemon or libvirt."""
    return f"tt-{host_id()[:8]}-{vm_id}"

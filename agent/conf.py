"""Settings of the agent app, read from the Django settings at every call.

The variables, their types, defaults and meanings are declared in ttproject/settings/variables.py and listed
in docs/settings.md; tests change them with `override_settings(AGENT_PUBLISH_ADDR=...)`. The layout of the
image directory is described in agent/storage/image_dir.py; engine and storage names are in
ttproject.vocabulary.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

from ttproject import vocabulary


def data_dir() -> Path:
    return Path(settings.DATA_DIR)


def image_dir() -> Path:
    """The file storage's base images (layout: agent/storage/image_dir.py)."""
    return Path(settings.AGENT_IMAGE_DIR or data_dir() / "images")


def vms_dir() -> Path:
    """Per-VM work directories: DATA_DIR/vms/<id> (overlay disk, seed, console log)."""
    return data_dir() / "vms"


def storage_name() -> str:
    return vocabulary.normalise_storage(settings.AGENT_STORAGE)


def publish_addr() -> str:
    return settings.AGENT_PUBLISH_ADDR


def port_range() -> tuple[int, int]:
    low, high = settings.AGENT_PORT_RANGE
    if not (1 <= low <= high <= 65535):
        raise ValueError(f"TTSTACK_PORT_RANGE {low}-{high} is not within 1-65535")
    return low, high


def network_pool() -> str:
    """The IPv4 range environment networks take their subnets from (agent/net/hostnet.py checks it)."""
    return settings.AGENT_NETWORK_POOL


def docker_url() -> str | None:
    return settings.AGENT_DOCKER_URL


def libvirt_uri() -> str:
    return settings.AGENT_LIBVIRT_URI


def qemu_accel() -> str:
    return settings.AGENT_QEMU_ACCEL


def stop_timeout() -> float:
    return float(settings.AGENT_STOP_TIMEOUT)


def enabled_engines() -> tuple[str, ...]:
    return tuple(settings.AGENT_ENGINES) or vocabulary.ENGINES


def option(variable: str):
    """An engine or storage option by its environment variable (TTSTACK_JAIL_IF -> settings.AGENT_JAIL_IF);
    the options are listed in docs/settings.md."""
    return getattr(settings, "AGENT_" + variable.removeprefix("TTSTACK_"))


def host_id() -> str:
    """A stable id of this agent, kept in DATA_DIR/host_id (created on first use, 0600 like the other files
    of the data dir)."""
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

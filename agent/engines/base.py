"""The one small interface every engine implements (TTstack's lesson: engines behind one interface).

An engine turns a resolved `GuestSpec` into a running guest and back. It never touches the database:
the agent records the VM before calling `create`, and cleans up (destroy, disk, seed, ports) when
`create` raises. Every method that removes something is idempotent: a missing guest is not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ttproject import errors


class EngineError(errors.UpstreamFailed):
    """The engine could not do what was asked; the message is shown to the user."""


class EngineUnavailable(EngineError, errors.Refused):
    """The engine does not work on this host (binary, device or functional probe failed): the request is
    refused (422), not an engine failure."""


# Guest states as the agent reports them.
RUNNING, STOPPED, MISSING = "running", "stopped", "missing"


@dataclass(frozen=True)
class Image:
    """A base image resolved from the image directory (or the docker engine's local images).

    Layout of the image directory (TTSTACK_IMAGE_DIR):
      NAME.qcow2 | NAME.raw              a bootable disk (BIOS boot)
      NAME/image.json + files            {"disk": "disk.qcow2", "format": "qcow2",
                                          "kernel": "vmlinuz", "initrd": "initrd.img",
                                          "cmdline": "...", "os": "linux"} for direct kernel boot
    """

    name: str
    engine_kind: str  # "vm" (disk-based: qemu, firecracker, bhyve) | "docker" | "jail"
    disk: Path | None = None
    disk_format: str = "qcow2"
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    size: int = 0  # bytes on disk
    extra: dict = field(default_factory=dict)


@dataclass
class GuestSpec:
    """Everything an engine needs to create one guest, already validated and allocated."""

    vm_id: str
    name: str  # engine object name: <prefix><vm_id>; unique per agent
    host_id: str  # written into labels/metadata so an agent finds only its own guests
    image: Image
    cpu: int
    mem: int  # MiB
    disk: int  # MiB
    port_map: dict[int, int]  # guest port -> host port
    publish_addr: str  # host address the ports are published on
    deny_outgoing: bool = False
    hostname: str = ""
    ssh_keys: list[str] = field(default_factory=list)
    disk_path: Path | None = None  # the VM's own disk (overlay/clone) made by the storage
    seed_path: Path | None = None  # cloud-init NoCloud ISO (volume id cidata)
    workdir: Path | None = None  # per-VM directory for logs, sockets, console output


class Engine(ABC):
    name: str = ""
    # VM engines boot a disk: port 22 is always published, a disk and a seed are made for them.
    is_vm: bool = True

    @abstractmethod
    def probe(self) -> tuple[bool, str]:
        """(works on this host, why not). Short and cached by the caller."""

    @abstractmethod
    def create(self, spec: GuestSpec) -> None:
        """Create and start the guest. Raise EngineError on failure (the caller cleans up)."""

    @abstractmethod
    def start(self, spec: GuestSpec) -> None: ...

    @abstractmethod
    def stop(self, spec: GuestSpec, timeout: float = 30) -> None:
        """Graceful shutdown, forced after `timeout` seconds."""

    @abstractmethod
    def destroy(self, spec: GuestSpec) -> None:
        """Remove the guest; no error if it is already gone."""

    @abstractmethod
    def state(self, spec: GuestSpec) -> str:
        """RUNNING, STOPPED or MISSING."""

    @abstractmethod
    def list_guests(self) -> dict[str, str]:
        """{vm_id: state} of every guest of this agent (found by its label/metadata)."""

    def ip(self, spec: GuestSpec) -> str | None:
        return None

    def images(self) -> list[Image]:
        """Images this engine provides itself (docker's local images); disk images come from storage."""
        return []

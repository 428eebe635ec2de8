"""The one small interface every engine implements (TTstack's lesson: engines behind one interface).

An engine turns a resolved `GuestSpec` into a running guest and back. It never touches the database:
the agent records the VM before calling `create`, and cleans up (destroy, disk, seed, ports) when
`create` raises. Every method that removes something is idempotent: a missing guest is not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from agent.image_names import check_name
from ttproject import errors
from ttproject.vocabulary import VM_ENGINES


class EngineError(errors.UpstreamFailed):
    """The engine could not do what was asked; the message is shown to the user."""


class EngineUnavailable(EngineError, errors.Refused):
    """The engine does not work on this host (binary, device or functional probe failed): the request is
    refused (422), not an engine failure."""


SSH_PORT = 22
CONSOLE_LOG = "console.log"
TAIL_BYTES = 256 * 1024  # what a console tail reads at most from the end of a log


def tail_lines(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file (its last TAIL_BYTES at most); "" when it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise EngineError(f"cannot read {path.name}: {exc}") from exc
    text = data.decode(errors="replace")
    return "".join(text.splitlines(keepends=True)[-lines:])


# Guest states as the agent reports them.
RUNNING, STOPPED, MISSING = "running", "stopped", "missing"
# `Image.engine_kind` of a disk image (the storage's), booted by the VM engines.
DISK_IMAGE = "vm"


@dataclass(frozen=True)
class Image:
    """A base image: a disk from the storage (agent/storage/image_dir.py describes the file storage's
    layout), or an image an engine provides itself (docker's local images, jail templates)."""

    name: str
    engine_kind: str  # DISK_IMAGE ("vm": qemu, firecracker, bhyve) | "docker" | "jail": who can boot it
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
    controller: str = ""  # id of the controller that asked for the guest, on its labels/metadata
    network: str = ""  # the environment network the guest joins on this host ("": none, docs/networks.md)
    private_ip: str = ""  # its address there, when the agent assigns it (qemu)


class Engine(ABC):
    """Whether an engine is a VM engine (port 22, a disk from the storage, a cloud-init seed) is
    `ttproject.vocabulary.VM_ENGINES`; an engine says itself which images it boots (`image_kind`, `can_boot`)."""

    name: str = ""
    image_kind: str = DISK_IMAGE
    # A successful probe is trusted for this long, then probed again (None: for good). Engines whose probe is
    # cheap set it, so a daemon that dies later (dockerd killed) shows as unavailable within seconds.
    recheck_after: float | None = None

    @classmethod
    def from_settings(cls) -> Engine:
        """The engine as this agent's settings (agent/conf.py) configure it."""
        from agent import conf

        return cls(host_id=conf.host_id())

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

    def implied_ports(self, image: Image) -> set[int]:
        """Guest ports every VM of this engine publishes with this image: 22 on the VM engines (sshd and
        the seed's keys are part of their contract)."""
        return {SSH_PORT} if self.name in VM_ENGINES else set()

    def console_tail(self, spec: GuestSpec, lines: int) -> tuple[str, str]:
        """(where it comes from, its last `lines` lines) of the guest's console: the serial console's log
        in the VM's work dir (qemu appends it there), "" when there is none yet."""
        path = Path(spec.workdir or "") / CONSOLE_LOG
        return CONSOLE_LOG, tail_lines(path, lines)

    def can_boot(self, image: Image) -> bool:
        return image.engine_kind == self.image_kind

    def images(self) -> list[Image]:
        """Images this engine provides itself (docker's local images); disk images come from storage."""
        return []

    def find_image(self, name: str) -> Image | None:
        """One of `images()` by name (checked first: ImageNameError)."""
        check_name(name)
        return next((image for image in self.images() if image.name == name), None)

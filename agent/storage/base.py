"""Where VM disks live. `file` (alias raw): qcow2 overlays; `zvol` (alias zfs): ZFS clones."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from agent.engines.base import Image
from agent.image_names import check_name
from ttproject import errors


class StorageError(errors.UpstreamFailed):
    """The storage could not make, remove or list a disk."""


class Storage(ABC):
    name: str = ""

    @abstractmethod
    def probe(self) -> tuple[bool, str]: ...

    @abstractmethod
    def create_disk(self, vm_id: str, image: Image, size_mib: int, workdir: Path) -> Path:
        """A copy-on-write disk for the VM on top of `image` (never a full copy), at least size_mib."""

    @abstractmethod
    def destroy_disk(self, vm_id: str, workdir: Path) -> None:
        """Remove the VM's disk; no error if it is already gone."""

    @abstractmethod
    def images(self) -> list[Image]:
        """Base images this storage can clone from."""

    @abstractmethod
    def location(self) -> str:
        """Where its images are, in words for a message ("/var/lib/ttstack/images")."""

    def find_image(self, name: str) -> Image | None:
        """One base image by name (checked first: ImageNameError), None when there is none."""
        check_name(name)
        return next((image for image in self.images() if image.name == name), None)

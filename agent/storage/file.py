"""`file` storage (alias raw): the VM disk is a qcow2 overlay on the base image, never a copy.

`qemu-img create -f qcow2 -F <base format> -b <base> <workdir>/disk.qcow2 <size>M`: the overlay starts at a
few hundred KiB whatever the base's size, and its virtual size is the requested `disk` (or the base's
virtual size when that is larger: an overlay cannot shrink its base).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from agent import conf
from agent.engines.base import Image
from agent.storage import image_dir
from agent.storage.base import Storage, StorageError

DISK_NAME = "disk.qcow2"
MIB = 1024 * 1024


class FileStorage(Storage):
    name = "file"

    def __init__(self, image_dir: Path | None = None):
        """image_dir: the base images (default: the setting TTSTACK_IMAGE_DIR, read at each use)."""
        self._image_dir = image_dir

    @property
    def image_dir(self) -> Path:
        return self._image_dir or conf.image_dir()

    def probe(self) -> tuple[bool, str]:
        if not shutil.which("qemu-img"):
            return False, "qemu-img is not installed (Debian: qemu-utils)"
        return True, ""

    def _virtual_size(self, image: Image) -> int:
        result = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", "-f", image.disk_format, str(image.disk)],
            capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise StorageError(f"cannot read base image {image.name}: {result.stderr.strip()}")
        return int(json.loads(result.stdout)["virtual-size"])

    def create_disk(self, vm_id: str, image: Image, size_mib: int, workdir: Path) -> Path:
        if image.disk is None:
            raise StorageError(f"image {image.name} has no disk")
        workdir.mkdir(parents=True, exist_ok=True)
        overlay = workdir / DISK_NAME
        base_mib = -(-self._virtual_size(image) // MIB)
        size = max(int(size_mib), base_mib)
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.disk_format, "-b", str(image.disk),
                "-o", "lazy_refcounts=on", str(overlay), f"{size}M"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            overlay.unlink(missing_ok=True)
            raise StorageError(f"creating the disk of {vm_id} failed: {result.stderr.strip()}")
        overlay.chmod(0o644)
        return overlay

    def destroy_disk(self, vm_id: str, workdir: Path) -> None:
        (workdir / DISK_NAME).unlink(missing_ok=True)

    def images(self) -> list[Image]:
        return image_dir.disk_images(self.image_dir)

    def find_image(self, name: str) -> Image | None:
        return image_dir.find_disk_image(name, self.image_dir)

    def location(self) -> str:
        return str(self.image_dir)

"""Base images: the image directory (disk images for VM engines) and the docker engine's local images.

Image directory layout (TTSTACK_IMAGE_DIR, default DATA_DIR/images):
  NAME.qcow2 | NAME.raw       a bootable disk (BIOS boot); format from the suffix
  NAME/image.json + files     {"disk": "disk.qcow2", "format": "qcow2", "kernel": "vmlinuz",
                              "initrd": "initrd.img", "cmdline": "...", "os": "linux",
                              "description": "..."}; paths relative to NAME/, kernel/initrd optional
Names must not contain "/" and must not start with a dot ("..", ".hidden" are refused) before any path
is built from them. Docker images are listed by their tags ("ttstack/tiny:latest"); a name without a tag
means ":latest". They are never used as paths.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from agent import conf
from agent.engines.base import Image

log = logging.getLogger(__name__)

DISK_SUFFIXES = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw"}
_DISK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$")
_DOCKER_REF = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$")


class ImageNameError(ValueError):
    pass


def check_name(name: str, docker: bool = False) -> str:
    """Refuse names that could escape the image directory (or are not docker references)."""
    if not isinstance(name, str) or not name:
        raise ImageNameError("image name is empty")
    if name.startswith(".") or ".." in name.split("/") or ".." in name:
        raise ImageNameError(f"image name {name!r} may not start with a dot or contain '..'")
    if docker:
        if not _DOCKER_REF.match(name) or "//" in name or len(name) > 255:
            raise ImageNameError(f"image name {name!r} is not a valid docker image reference")
        return name
    if "/" in name or "\\" in name:
        raise ImageNameError(f"image name {name!r} may not contain '/'")
    if not _DISK_NAME.match(name):
        raise ImageNameError(f"image name {name!r} must be 1-128 characters of [A-Za-z0-9._+-]")
    return name


def _from_dir(path: Path) -> Image | None:
    try:
        meta = json.loads((path / "image.json").read_text())
    except (OSError, ValueError) as exc:
        log.warning("images: ignoring %s: %s", path, exc)
        return None
    root = path.resolve()

    def inside(key: str) -> Path | None:
        value = meta.get(key)
        if not value:
            return None
        file = (path / value).resolve()
        if root not in file.parents or not file.is_file():
            log.warning("images: %s: %s %r is missing or outside the image", path, key, value)
            raise FileNotFoundError(value)
        return file

    try:
        disk, kernel, initrd = inside("disk"), inside("kernel"), inside("initrd")
    except FileNotFoundError:
        return None
    if disk is None:
        log.warning("images: %s has no disk", path)
        return None
    size = sum(f.stat().st_blocks * 512 for f in (disk, kernel, initrd) if f)
    fmt = meta.get("format") or DISK_SUFFIXES.get(disk.suffix, "qcow2")
    return Image(name=path.name, engine_kind="vm", disk=disk, disk_format=fmt, kernel=kernel, initrd=initrd,
                 cmdline=meta.get("cmdline", ""), size=size,
                 extra={"description": meta.get("description", ""), "os": meta.get("os", "linux")})


def _from_file(path: Path) -> Image:
    return Image(name=path.stem, engine_kind="vm", disk=path.resolve(), disk_format=DISK_SUFFIXES[path.suffix],
                 size=path.stat().st_blocks * 512, extra={"description": f"disk image {path.name}"})


def disk_images(directory: Path | None = None) -> list[Image]:
    """Every usable disk image in the image directory, sorted by name."""
    directory = directory or conf.image_dir()
    found: dict[str, Image] = {}
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        image = None
        if entry.is_dir() and (entry / "image.json").exists():
            image = _from_dir(entry)
        elif entry.is_file() and entry.suffix in DISK_SUFFIXES:
            image = _from_file(entry)
        if image is not None:
            try:
                check_name(image.name)
            except ImageNameError:
                continue
            found.setdefault(image.name, image)
    return list(found.values())


def find_disk_image(name: str, directory: Path | None = None) -> Image | None:
    """Look one disk image up by name (name already checked)."""
    check_name(name)
    directory = directory or conf.image_dir()
    candidate = directory / name
    if candidate.is_dir() and (candidate / "image.json").exists():
        return _from_dir(candidate)
    for suffix in DISK_SUFFIXES:
        file = directory / f"{name}{suffix}"
        if file.is_file():
            return _from_file(file)
    return None


def docker_ref(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else f"{name}:latest"

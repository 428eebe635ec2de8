"""The image directory of the file storage (TTSTACK_IMAGE_DIR, default DATA_DIR/images).

Layout:
  NAME.qcow2 | NAME.raw | NAME.img   a bootable disk (BIOS boot); format from the suffix
  NAME/image.json + files            {"disk": "disk.qcow2", "format": "qcow2", "kernel": "vmlinuz",
                                     "initrd": "initrd.img", "cmdline": "...", "os": "linux",
                                     "description": "..."}; paths relative to NAME/, kernel/initrd optional
  .NAME.qcow2.sha256                 the sha256 of NAME.qcow2 as an import checked it (JSON: sha256, size,
                                     mtime_ns; stale once the file's size or mtime differ)
  .NAME.import-TASK                  an import in progress (never listed; removed when it fails)
A file named in image.json must stay inside NAME/ (a "../x" makes the image unusable). Names are checked
(agent.image_names) before any path is built from them. A directory image's sha256 is image.json's
"sha256" (of its disk).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.engines.base import DISK_IMAGE, Image
from agent.image_names import ImageNameError, check_name

log = logging.getLogger(__name__)

DISK_SUFFIXES = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw"}


def digest_file(image_file: Path) -> Path:
    return image_file.with_name(f".{image_file.name}.sha256")


def recorded_sha256(image_file: Path) -> str:
    """The sha256 recorded beside a single-file image, "" when none is or the file changed since."""
    try:
        record = json.loads(digest_file(image_file).read_text())
        stat = image_file.stat()
    except (OSError, ValueError):
        return ""
    if not isinstance(record, dict) or record.get("size") != stat.st_size or \
            record.get("mtime_ns") != stat.st_mtime_ns:
        return ""
    return str(record.get("sha256", ""))


def record_sha256(image_file: Path, sha256: str) -> None:
    stat = image_file.stat()
    digest_file(image_file).write_text(json.dumps({"sha256": sha256, "size": stat.st_size,
                                                   "mtime_ns": stat.st_mtime_ns}) + "\n")


def _inside(path: Path, meta: dict, key: str) -> Path | None:
    """The file image.json names under `key`, or None when it names none; FileNotFoundError when it is
    missing or outside the image's directory."""
    value = meta.get(key)
    if not value:
        return None
    root = path.resolve()
    file = (path / value).resolve()
    if root not in file.parents or not file.is_file():
        log.warning("images: %s: %s %r is missing or outside the image", path, key, value)
        raise FileNotFoundError(value)
    return file


def _from_dir(path: Path) -> Image | None:
    try:
        meta = json.loads((path / "image.json").read_text())
    except (OSError, ValueError) as exc:
        log.warning("images: ignoring %s: %s", path, exc)
        return None
    try:
        disk, kernel, initrd = (_inside(path, meta, key) for key in ("disk", "kernel", "initrd"))
    except FileNotFoundError:
        return None
    if disk is None:
        log.warning("images: %s has no disk", path)
        return None
    size = sum(f.stat().st_blocks * 512 for f in (disk, kernel, initrd) if f)
    fmt = meta.get("format") or DISK_SUFFIXES.get(disk.suffix, "qcow2")
    return Image(name=path.name, engine_kind=DISK_IMAGE, disk=disk, disk_format=fmt, kernel=kernel,
                 initrd=initrd, cmdline=meta.get("cmdline", ""), size=size,
                 extra={"description": meta.get("description", ""), "os": meta.get("os", "linux"),
                        "sha256": str(meta.get("sha256", ""))})


def image_of_dir(path: Path) -> Image | None:
    """The directory image at `path` (any name), None when its image.json does not describe one."""
    return _from_dir(path)


def _from_file(path: Path) -> Image:
    return Image(name=path.stem, engine_kind=DISK_IMAGE, disk=path.resolve(),
                 disk_format=DISK_SUFFIXES[path.suffix], size=path.stat().st_blocks * 512,
                 extra={"description": f"disk image {path.name}", "sha256": recorded_sha256(path)})


def disk_images(directory: Path) -> list[Image]:
    """Every usable disk image in the directory, sorted by name."""
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


def find_disk_image(name: str, directory: Path) -> Image | None:
    """One disk image by name; ImageNameError for a name that could escape the directory."""
    check_name(name)
    candidate = directory / name
    if candidate.is_dir() and (candidate / "image.json").exists():
        return _from_dir(candidate)
    for suffix in DISK_SUFFIXES:
        file = directory / f"{name}{suffix}"
        if file.is_file():
            return _from_file(file)
    return None

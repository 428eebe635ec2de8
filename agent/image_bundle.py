"""The bytes an agent serves for one of its disk images: a single-file image as it is; a directory image
(NAME/image.json + disk, kernel, initrd) as a *bundle*, a ustar archive of the directory's regular files
made the same way every time (sorted names, mode 0644, mtime 0, owner 0), so its sha256 is stable and any
byte range of it can be produced without writing it anywhere (resumed downloads ask for one).

A layout is a list of segments, each either `bytes` or `(path, size)`; `read(layout, start, end)` yields
bytes start..end (inclusive) of their concatenation.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from agent.storage import image_dir

BLOCK = 512
Segment = bytes | tuple[Path, int]


def _members(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink())


def layout_of_dir(directory: Path) -> list[Segment]:
    layout: list[Segment] = []
    for path in _members(directory):
        info = tarfile.TarInfo(path.name)
        info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
        layout.append(info.tobuf(format=tarfile.USTAR_FORMAT))
        layout.append((path, info.size))
        if info.size % BLOCK:
            layout.append(bytes(BLOCK - info.size % BLOCK))
    layout.append(bytes(2 * BLOCK))  # end of archive
    return layout


def size_of(layout: list[Segment]) -> int:
    return sum(len(s) if isinstance(s, bytes) else s[1] for s in layout)


def read(layout: list[Segment], start: int, end: int, chunk: int) -> Iterator[bytes]:
    offset = 0
    for segment in layout:
        length = len(segment) if isinstance(segment, bytes) else segment[1]
        lo, hi = max(start, offset), min(end + 1, offset + length)
        if lo < hi:
            if isinstance(segment, bytes):
                yield segment[lo - offset:hi - offset]
            else:
                with segment[0].open("rb") as fh:
                    fh.seek(lo - offset)
                    left = hi - lo
                    while left > 0 and (data := fh.read(min(chunk, left))):
                        left -= len(data)
                        yield data
        offset += length
        if offset > end:
            return


def _fingerprint(directory: Path) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in _members(directory)]


def bundle_sha256(directory: Path, chunk: int) -> str:
    """The bundle's sha256, recorded in .NAME.bundle.sha256 beside the directory until one of its files
    changes."""
    record = directory.with_name(f".{directory.name}.bundle.sha256")
    fingerprint = _fingerprint(directory)
    try:
        known = json.loads(record.read_text())
        if known.get("files") == fingerprint:
            return str(known["sha256"])
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    layout = layout_of_dir(directory)
    digest = hashlib.sha256()
    for data in read(layout, 0, size_of(layout) - 1, chunk):
        digest.update(data)
    record.write_text(json.dumps({"sha256": digest.hexdigest(), "files": fingerprint}) + "\n")
    return digest.hexdigest()


def file_sha256(path: Path, chunk: int) -> str:
    """A single-file image's sha256 as recorded beside it, computed (and recorded) when there is none."""
    known = image_dir.recorded_sha256(path)
    if known:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while data := fh.read(chunk):
            digest.update(data)
    image_dir.record_sha256(path, digest.hexdigest())
    return digest.hexdigest()

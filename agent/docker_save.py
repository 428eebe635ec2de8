"""A docker image as a docker-archive stream (`docker save`), for the spread to another agent (image_serve.py).

The target needs the stream's size and sha256 before it downloads (its import checks both). `docker save` of
one image under one name gives the same bytes every time (the archive is made from the image's content, with
no times of its own), so a first pass measures them, kept per image id for the life of this process, and a
download resumed at byte N (Range) is the same stream with its first N bytes skipped. Were docker to change
that, the target's sha256 check would refuse the copy: nothing wrong gets installed.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from agent import image_store
from agent.image_names import ImageNameError, check_docker_ref, docker_ref

_measured: dict[tuple[str, str], tuple[int, str]] = {}  # (image id, name) -> (size, sha256)
_guard = threading.Lock()


def find(name: str) -> tuple:
    """(the docker image `name` refers to, its reference with the tag); (None, "") when docker has none or
    the name is not a reference."""
    try:
        ref = docker_ref(check_docker_ref(name))
    except ImageNameError:
        return None, ""
    image = image_store.find_docker_image(ref)
    return (image, ref) if image is not None else (None, "")


def _stream(image, ref: str, chunk: int) -> Iterator[bytes]:
    return image.save(chunk_size=chunk, named=ref)  # named: `docker load` on the target tags it so


def measure(image, ref: str, chunk: int) -> tuple[int, str]:
    """(size, sha256) of the image's docker-archive under `ref`, one pass through `docker save` per image."""
    key = (image.id, ref)
    with _guard:  # two tickets at once: one pass
        if key not in _measured:
            digest, size = hashlib.sha256(), 0
            for data in _stream(image, ref, chunk):
                digest.update(data)
                size += len(data)
            _measured[key] = (size, digest.hexdigest())
        return _measured[key]


def read(image, ref: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
    """The archive's bytes start..end (inclusive)."""
    stream = _stream(image, ref, chunk)
    offset = 0
    try:
        for data in stream:
            lo, hi = max(start - offset, 0), min(end + 1 - offset, len(data))
            if lo < hi:
                yield data[lo:hi]
            offset += len(data)
            if offset > end:
                return
    finally:
        stream.close()

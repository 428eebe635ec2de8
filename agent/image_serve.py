"""Serving a disk image to another agent, for the controller's spread (fleet/image_spread.py).

The controller, with this host's key, asks for a ticket (`POST /api/images/NAME/ticket`): a URL path bound
to that image and an expiry, signed with HMAC-SHA256 under a secret only this agent holds
(DATA_DIR/image_ticket_secret, 0600). The target agent downloads the path with the ticket as its only
credential (it never sees this host's key), streamed, and may resume with `Range: bytes=N-` after a cut.
A single-file disk (NAME.qcow2 / NAME.raw) is served as it is, a directory image as a bundle (a stable tar
of its files, agent/image_bundle.py; format `image-dir`), a docker image as `docker save` makes it
(agent/docker_save.py; format `docker-archive`, which the target's import hands to `docker load`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse

from agent import conf, docker_save, image_bundle
from agent.image_names import ImageNameError, check_any, check_name
from agent.storage import image_dir
from ttproject import errors

CHUNK = 256 << 10  # twisted (daphne) moves 256 KiB writes faster than 1 MiB ones (bench/image_spread.py)
_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


def _secret() -> bytes:
    path = conf.data_dir() / "image_ticket_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
    return path.read_bytes()


def _signature(name: str, expires: int) -> str:
    return hmac.new(_secret(), f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


class Served:
    """What GET .../content sends for a disk image: its layout (agent/image_bundle.py), format and sha256."""

    def __init__(self, name: str, image):
        self.image = image
        self.directory = conf.image_dir().resolve() / name
        self.single = image.disk.parent == conf.image_dir().resolve()
        if self.single:
            self.layout = [(image.disk, image.disk.stat().st_size)]
            self.format = image_dir.DISK_SUFFIXES[image.disk.suffix]
        else:
            self.layout = image_bundle.layout_of_dir(self.directory)
            self.format = "image-dir"
        self.size = image_bundle.size_of(self.layout)

    def sha256(self) -> str:
        if self.single:
            return image_bundle.file_sha256(self.image.disk, CHUNK)
        return image_bundle.bundle_sha256(self.directory, CHUNK)

    def listed_sha256(self) -> str:
        """What GET /api/images lists for it (a directory image: its disk's), to tell a host has it already."""
        return self.sha256() if self.single else self.image.extra.get("sha256", "")

    def pieces(self, start: int, end: int):
        return image_bundle.read(self.layout, start, end, CHUNK)


class DockerServed:
    """What GET .../content sends for a docker image: `docker save` of it (agent/docker_save.py)."""

    format = "docker-archive"

    def __init__(self, image, ref: str):
        self.image, self.ref = image, ref
        self.size, self._sha256 = docker_save.measure(image, ref, CHUNK)

    def sha256(self) -> str:
        return self._sha256

    def listed_sha256(self) -> str:
        return self.image.id.removeprefix("sha256:")  # a docker image is listed by its id (the same after a load)

    def pieces(self, start: int, end: int):
        return docker_save.read(self.image, self.ref, start, end, CHUNK)


def served(name: str) -> Served | DockerServed:
    """The disk image of that name, else the docker image; NotFound when this host has neither."""
    check_any(name)
    try:
        disk = image_dir.find_disk_image(check_name(name), conf.image_dir())
    except ImageNameError:
        disk = None
    if disk is not None and disk.disk is not None:
        return Served(name, disk)
    image, ref = docker_save.find(name)
    if image is not None:
        return DockerServed(image, ref)
    raise errors.NotFound(f"no disk or docker image {name!r} on this host")


def issue_ticket(name: str) -> dict:
    image = served(name)
    expires = int(time.time() + float(settings.AGENT_IMAGE_TICKET_TTL))
    ticket = f"{expires}.{_signature(name, expires)}"
    return {"name": name, "path": f"/api/images/{quote(name, safe='')}/content?ticket={ticket}",
            "expires_at": expires, "sha256": image.sha256(), "size": image.size, "format": image.format,
            "image_sha256": image.listed_sha256()}


def ticket_valid(name: str, ticket: str) -> bool:
    expires, _, signature = (ticket or "").partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature, _signature(name, int(expires)))


async def _chunks(image: Served | DockerServed, start: int, end: int):
    """The bytes start..end (inclusive), each chunk read in a thread so the event loop keeps serving."""
    pieces = image.pieces(start, end)
    try:
        while chunk := await asyncio.to_thread(next, pieces, b""):
            yield chunk
    finally:
        pieces.close()


def content(request, name: str):
    """GET the image's bytes with a ticket (`?ticket=`); `Range: bytes=N-[M]` answers 206 from N."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        check_any(name)
    except ImageNameError as exc:
        return JsonResponse({"detail": exc.message}, status=400)
    if not ticket_valid(name, request.GET.get("ticket", "")):
        return JsonResponse({"detail": "a valid, unexpired image ticket is required (POST /api/images/NAME/"
                                       "ticket with the host's key)"}, status=403)
    try:
        image = served(name)
    except errors.DomainError as exc:
        return JsonResponse({"detail": exc.message}, status=404)
    size = image.size
    start, end, status = 0, size - 1, 200
    wanted = request.headers.get("Range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if not match or int(match[1]) >= size:
            reply = JsonResponse({"detail": f"range {wanted!r} is not within the {size} bytes"}, status=416)
            reply["Content-Range"] = f"bytes */{size}"
            return reply
        start, end, status = int(match[1]), min(int(match[2] or size - 1), size - 1), 206
    body = _chunks(image, start, end) if request.method == "GET" else _nothing()
    reply = StreamingHttpResponse(body, status=status, content_type="application/octet-stream")
    reply["Content-Length"] = str(end - start + 1)
    reply["Accept-Ranges"] = "bytes"
    if status == 206:
        reply["Content-Range"] = f"bytes {start}-{end}/{size}"
    return reply


async def _nothing():
    return
    yield b""

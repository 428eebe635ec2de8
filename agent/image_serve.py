"""Serving a disk image to another agent, for the controller's spread (fleet/image_spread.py).

The controller, with this host's key, asks for a ticket (`POST /api/images/NAME/ticket`): a URL path bound
to that image and an expiry, signed with HMAC-SHA256 under a secret only this agent holds
(DATA_DIR/image_ticket_secret, 0600). The target agent downloads the path with the ticket as its only
credential (it never sees this host's key), streamed, and may resume with `Range: bytes=N-` after a cut.
Only single-file disk images are served (NAME.qcow2 / NAME.raw).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse

from agent import conf
from agent.image_names import ImageNameError, check_name
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


def _served_file(name: str) -> Path:
    """The single file of a disk image; NotFound / Refused in words for the controller's task."""
    check_name(name)
    image = image_dir.find_disk_image(name, conf.image_dir())
    if image is None or image.disk is None:
        raise errors.NotFound(f"no disk image {name!r} on this host")
    if image.disk.parent != conf.image_dir().resolve():
        raise errors.Refused(f"image {name!r} is a directory image (disk, kernel, initrd); only single-file "
                             "disks are spread host to host: import it on each host from a URL")
    return image.disk


def sha256_of(path: Path) -> str:
    """The recorded sha256 of an image file, computed (and recorded) when there is none yet."""
    known = image_dir.recorded_sha256(path)
    if known:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    image_dir.record_sha256(path, digest.hexdigest())
    return digest.hexdigest()


def issue_ticket(name: str) -> dict:
    path = _served_file(name)
    expires = int(time.time() + float(settings.AGENT_IMAGE_TICKET_TTL))
    ticket = f"{expires}.{_signature(name, expires)}"
    return {"name": name, "path": f"/api/images/{quote(name)}/content?ticket={ticket}", "expires_at": expires,
            "sha256": sha256_of(path), "size": path.stat().st_size, "format": image_dir.DISK_SUFFIXES[path.suffix]}


def ticket_valid(name: str, ticket: str) -> bool:
    expires, _, signature = (ticket or "").partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature, _signature(name, int(expires)))


async def _chunks(path: Path, start: int, end: int):
    """The bytes start..end (inclusive), read in a thread so the event loop keeps serving."""
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(fh.seek, start)
        left = end - start + 1
        while left > 0:
            chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        fh.close()


def content(request, name: str):
    """GET the image's bytes with a ticket (`?ticket=`); `Range: bytes=N-[M]` answers 206 from N."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        check_name(name)
    except ImageNameError as exc:
        return JsonResponse({"detail": exc.message}, status=400)
    if not ticket_valid(name, request.GET.get("ticket", "")):
        return JsonResponse({"detail": "a valid, unexpired image ticket is required (POST /api/images/NAME/"
                                       "ticket with the host's key)"}, status=403)
    try:
        path = _served_file(name)
    except errors.DomainError as exc:
        return JsonResponse({"detail": exc.message}, status=404)
    size = path.stat().st_size
    start, end, status = 0, size - 1, 200
    wanted = request.headers.get("Range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if not match or int(match[1]) >= size:
            reply = JsonResponse({"detail": f"range {wanted!r} is not within the {size} bytes"}, status=416)
            reply["Content-Range"] = f"bytes */{size}"
            return reply
        start, end, status = int(match[1]), min(int(match[2] or size - 1), size - 1), 206
    body = _chunks(path, start, end) if request.method == "GET" else _nothing()
    reply = StreamingHttpResponse(body, status=status, content_type="application/octet-stream")
    reply["Content-Length"] = str(end - start + 1)
    reply["Accept-Ranges"] = "bytes"
    if status == 206:
        reply["Content-Range"] = f"bytes {start}-{end}/{size}"
    return reply


async def _nothing():
    return
    yield b""

"""Image names, checked before any path or reference is built from them.

Disk images (the storage's) and jail templates are plain names: 1-128 characters of [A-Za-z0-9._+-], no "/",
no leading dot, no "..". Docker images are references ("ttstack/tiny:latest"); a name without a tag means
":latest". A bad name is a 400 about the request's `image` field.
"""

from __future__ import annotations

import re

from ttproject import errors

_DISK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}\Z")
_DOCKER_REF = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?\Z")


class ImageError(errors.Invalid):
    """The request's image is wrong: a bad name, unknown here, or not bootable by the engine."""

    def __init__(self, message: str):
        super().__init__(f"image: {message}", errors={"image": [message]})


class ImageNameError(ImageError):
    """A name that could escape the image directory, or is not a docker reference."""


def _common_checks(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ImageNameError("image name is empty")
    if name.startswith(".") or ".." in name:
        raise ImageNameError(f"image name {name!r} may not start with a dot or contain '..'")


def check_name(name: str) -> str:
    """A disk image's (or template's) name, refused when it could escape its directory."""
    _common_checks(name)
    if "/" in name or "\\" in name:
        raise ImageNameError(f"image name {name!r} may not contain '/'")
    if not _DISK_NAME.match(name):
        raise ImageNameError(f"image name {name!r} must be 1-128 characters of [A-Za-z0-9._+-]")
    return name


def check_docker_ref(name: str) -> str:
    _common_checks(name)
    if not _DOCKER_REF.match(name) or "//" in name or len(name) > 255:
        raise ImageNameError(f"image name {name!r} is not a valid docker image reference")
    return name


def docker_ref(name: str) -> str:
    """The reference with its tag: "ttstack/tiny" means "ttstack/tiny:latest"."""
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else f"{name}:latest"


def check_any(name: str) -> str:
    """A disk image's name as it is, else a docker reference with its tag (a spread or a delete may name
    either; "ttstack/tiny" is "ttstack/tiny:latest", as the agents list it)."""
    try:
        return check_name(name)
    except ImageNameError:
        return docker_ref(check_docker_ref(name))

"""The images this agent can boot: disk images from its storage (for the VM engines) and the images the
other engines provide themselves (docker's local images, jail templates). Which engine boots which image
is the engine's word (`Engine.can_boot`)."""

from __future__ import annotations

import logging

from agent import engines as registry
from agent import storage as storages
from agent.engines.base import Engine, EngineError, Image
from agent.image_names import ImageError
from agent.storage.base import StorageError
from ttproject.vocabulary import VM_ENGINES

log = logging.getLogger(__name__)


def image_json(image: Image, engines: list[str]) -> dict:
    """An image as GET /api/images shows it: kind disk or docker, the engines that boot it here."""
    docker = image.engine_kind == "docker"
    return {
        "name": image.name,
        "engines": engines,
        "kind": "docker" if docker else "disk",
        "format": "docker" if docker else image.disk_format,
        "size": int(image.size),
        "description": image.extra.get("description", ""),
        # disk: of the disk file (recorded by an import or the image's build); docker: the image id
        "sha256": (image.extra.get("id") or "").removeprefix("sha256:") if docker else image.extra.get("sha256", ""),
    }


def list_images() -> list[dict]:
    """Every image, with the available engines that boot it; a storage or engine that fails is skipped."""
    engines = registry.available_engines()
    try:
        disk_images = storages.get().images()
    except StorageError as exc:
        log.warning("images: %s", exc)
        disk_images = []
    result = [image_json(image, [e.name for e in engines if e.name in VM_ENGINES and e.can_boot(image)])
              for image in disk_images]
    for engine in engines:
        if engine.name in VM_ENGINES:
            continue
        try:
            result += [image_json(image, [engine.name]) for image in engine.images()]
        except EngineError as exc:
            log.warning("images of %s: %s", engine.name, exc)
            registry.forget_probe(engine.name)  # a daemon that died since the last probe is seen at once
    return result


def resolve_image(name: str, engine: Engine) -> Image:
    """The image `engine` is to boot; ImageError (400) naming the problem. Names are checked before any
    path is built from them."""
    if engine.name in VM_ENGINES:
        storage = storages.get()
        image = storage.find_image(name)
        if image is None:
            raise ImageError(f"unknown image {name!r}: no such disk image in {storage.location()}")
    else:
        image = engine.find_image(name)
        if image is None:
            raise ImageError(f"unknown image {name!r}: not among the {engine.name} engine's images")
    if not engine.can_boot(image):
        raise ImageError(f"the {engine.name} engine cannot boot image {name!r}")
    return image


def placeholder(name: str, engine: Engine | None) -> Image:
    """A stand-in for an image that is gone or not needed (stop, start and destroy never read it)."""
    kind = engine.image_kind if engine is not None else Engine.image_kind
    return Image(name=name, engine_kind=kind)

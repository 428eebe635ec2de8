"""`ttstack image build NAME [--engine qemu|docker] [--force]`: the images ttstack builds itself.

| NAME        | engine | what                                                                           |
|-------------|--------|--------------------------------------------------------------------------------|
| tiny        | qemu   | Debian cloud kernel + busybox/dropbear initramfs, for fast tests (tiny.py)      |
| docker-tiny | docker | ttstack/tiny:latest, busybox serving HTTP on port 80 (docker_tiny.py)          |
| debian-12   | qemu   | Debian 12 cloud disk with cloud-init, grows to the VM's disk (debian_disk.py)  |
| debian-12   | docker | debian-12:latest (= ttstack/debian-12:latest), sshd as its entry (debian_docker.py) |

Disk images are installed into the agent's image directory (TTSTACK_IMAGE_DIR), docker images into the
docker daemon. Downloaded packages and finished images are kept in the build cache (agent.imagebuild.cache,
TTSTACK_CACHE_DIR); docs/images.md describes every image and the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# name -> the engines it is built for, in build order
ENGINES_OF = {"tiny": ("qemu",), "docker-tiny": ("docker",), "debian-12": ("qemu", "docker")}
KINDS = tuple(ENGINES_OF)


def _builder(kind: str, engine: str) -> Callable:
    from agent import conf

    if (kind, engine) == ("tiny", "qemu"):
        from agent.imagebuild.tiny import build_tiny

        return lambda force, log: build_tiny(conf.image_dir(), name="tiny", force=force, log=log)
    if (kind, engine) == ("docker-tiny", "docker"):
        from agent.imagebuild.docker_tiny import build_docker_tiny

        return lambda force, log: build_docker_tiny(force=force, log=log)
    if (kind, engine) == ("debian-12", "qemu"):
        from agent.imagebuild import debian_disk

        return lambda force, log: debian_disk.build(conf.image_dir(), force=force, log=log)
    if (kind, engine) == ("debian-12", "docker"):
        from agent.imagebuild import debian_docker

        return lambda force, log: debian_docker.build(force=force, log=log)
    raise ValueError(f"image {kind!r} is not built for the {engine} engine")


def build(kind: str, force: bool = False, log=print, engine: str | None = None) -> Path | str:
    """Build ``kind`` for ``engine`` (default: the first it exists for); returns the image directory (disk
    images) or the docker tag."""
    if kind not in ENGINES_OF:
        raise ValueError(f"unknown image {kind!r}; expected one of {', '.join(KINDS)}")
    engine = engine or ENGINES_OF[kind][0]
    if engine not in ENGINES_OF[kind]:
        raise ValueError(f"image {kind!r} is built for {', '.join(ENGINES_OF[kind])}, not {engine}")
    return _builder(kind, engine)(force, log)

"""The build cache: downloaded packages, unpacked kernels and finished images, kept between builds.

Setting: ``TTSTACK_CACHE_DIR`` (default ``/var/cache/ttstack`` as root, else ``$XDG_CACHE_HOME/ttstack``
or ``~/.cache/ttstack``). It lives outside any checkout and outside the agent's data dir, so every clone,
test run and agent on the machine shares one copy of each image.

  CACHE/debs/PACKAGE_VERSION_ARCH.deb        packages fetched with ``apt-get download``
  CACHE/debs/PACKAGE_VERSION_ARCH/           the same, unpacked (``dpkg-deb -x``, then ``depmod``)
  CACHE/images/NAME-ENGINE-KEY/              a finished image; KEY hashes the recipe and its scripts, so a
                                             change to either builds a new entry instead of reusing a stale one

Finished entries are written under a temporary name and renamed into place, and each build holds a lock
on its entry, so concurrent builds of one image wait for each other and never see half an image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from agent.imagebuild.steps import Log

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def cache_dir() -> Path:
    """The cache root (TTSTACK_CACHE_DIR; its default is declared in ttproject/settings/variables.py)."""
    from agent import conf

    return Path(conf.option("TTSTACK_CACHE_DIR")).expanduser()


def debs_dir() -> Path:
    return cache_dir() / "debs"


def images_dir() -> Path:
    return cache_dir() / "images"


def cached_kernels() -> list[Path]:
    """Linux kernels unpacked in the cache (``debs/linux-image-*/boot/vmlinuz-*``), oldest version first.

    For callers that need some bootable kernel, e.g. the qemu engine's KVM probe of an image that has none.
    """
    return sorted(debs_dir().glob("linux-image-*/boot/vmlinuz-*"))


def recipe_key(recipe: dict, scripts: Iterable[Path]) -> str:
    """12 hex digits naming one recipe: its parameters and the bytes of every file that builds it."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for path in sorted(scripts):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock (``.locks/NAME`` beside ``path``) for the duration of a build of ``path``."""
    locks = path.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / path.name, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def staging(target: Path) -> Iterator[Path]:
    """A fresh directory beside ``target`` that becomes ``target`` when the block succeeds (else removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        yield tmp
        tmp.chmod(0o755)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
    """Move the directory ``new`` to ``target``, replacing what is there with as short a gap as rename allows."""
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
        os.rename(target, old / target.name)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def link_or_copy(src: Path, dst: Path) -> str:
    """Put ``src`` at ``dst`` by hard link, else reflink, else copy; returns which one it was.

    Base images are never written to (VM disks are overlays on them), so sharing the inode is safe.
    """
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        pass
    result = subprocess.run(["cp", "--reflink=always", "--", str(src), str(dst)], capture_output=True)
    if result.returncode == 0:
        return "reflink"
    shutil.copyfile(src, dst)
    return "copy"


def install_image(entry: Path, target: Path, log: Log) -> Path:
    """Make the agent's image directory ``target`` hold the cached image ``entry`` (all its files).

    Already installed from the same build (same image.json): nothing to do.
    """
    meta = entry / "image.json"
    if (target / "image.json").is_file() and (target / "image.json").read_bytes() == meta.read_bytes():
        log(f"{target.name}: {target} is up to date")
        return target
    with staging(target) as tmp:
        ways = set()
        for file in sorted(entry.iterdir()):
            if file.is_file() and file.name != "image.json":
                ways.add(link_or_copy(file, tmp / file.name))
        shutil.copyfile(meta, tmp / "image.json")
    log(f"{target.name}: installed {target} from the cache ({', '.join(sorted(ways)) or 'metadata only'})")
    return target

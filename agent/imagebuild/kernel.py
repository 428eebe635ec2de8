"""A Debian cloud kernel from the machine's apt sources, unpacked into the build cache, with its modules.

``apt-get download`` fetches the package the meta package ``linux-image-cloud-amd64`` points at;
``dpkg-deb -x`` unpacks it and ``depmod -b`` writes its ``modules.dep`` (the package leaves that to its
postinst), so kmod's ``modprobe -d TREE --show-depends`` can give any module's dependencies in load order.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.imagebuild.cache import debs_dir
from agent.imagebuild.steps import BuildError, Log, run

META_PACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class Kernel:
    tree: Path  # the unpacked package
    version: str  # e.g. 6.1.0-57-cloud-amd64

    @property
    def vmlinuz(self) -> Path:
        return self.tree / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.tree / "lib" / "modules" / self.version

    def load_order(self, names: list[str], skip: set[str] = frozenset()) -> list[Path]:
        """The module files to insmod, dependencies first, for ``names`` (built-ins and ``skip`` left out)."""
        out = run(["modprobe", "-d", str(self.tree), "-S", self.version, "--show-depends", "-a", *names]).stdout
        order: list[Path] = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in order and module_name(path) not in skip:
                    order.append(path)
        return order


def module_name(path: Path) -> str:
    """virtio_net for .../virtio_net.ko(.xz); kmod treats '-' and '_' alike."""
    return path.name.split(".ko")[0].replace("-", "_")


def kernel_package_name() -> str:
    """The versioned package the meta package depends on, e.g. linux-image-6.1.0-57-cloud-amd64."""
    out = run(["apt-cache", "depends", META_PACKAGE]).stdout
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+-cloud-amd64)\s*$", line)
        if m:
            return m.group(1)
    raise BuildError(f"apt-cache depends {META_PACKAGE} names no linux-image-*-cloud-amd64 package")


def fetch_deb(package: str, log: Log) -> Path:
    """The package's .deb in the cache, downloaded with ``apt-get download`` when it is not there yet."""
    cache = debs_dir()
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    log(f"downloading {package} into {cache}")
    # Into a private directory, then renamed: a concurrent build never sees half a file.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".dl-") as tmp:
        run(["apt-get", "download", package], cwd=tmp)
        got = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not got:
            raise BuildError(f"apt-get download {package} produced no .deb")
        target = cache / got[-1].name
        os.replace(got[-1], target)
    return target


def unpack(deb: Path, log: Log) -> Path:
    """Unpack a .deb once beside itself (and run depmod on any kernel in it); returns the tree."""
    tree = deb.with_suffix("")
    if (tree / ".complete").exists():
        return tree
    log(f"unpacking {deb.name}")
    tmp = Path(tempfile.mkdtemp(dir=deb.parent, prefix=".x-"))
    try:
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        for moddir in (tmp / "lib" / "modules").glob("*"):
            run(["depmod", "-b", str(tmp), moddir.name])
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, tree)
        except OSError:
            if not (tree / ".complete").exists():  # not a concurrent build that won the race
                shutil.rmtree(tree, ignore_errors=True)
                os.rename(tmp, tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def cloud_kernel(log: Log) -> Kernel:
    """Debian's current cloud kernel, unpacked; the newest cached one when apt cannot resolve the package."""
    try:
        deb = fetch_deb(kernel_package_name(), log)
    except BuildError as exc:
        cached = sorted(debs_dir().glob("linux-image-*-cloud-amd64_*.deb"))
        if not cached:
            raise
        log(f"cannot fetch {META_PACKAGE} ({exc}); using the cached {cached[-1].name}")
        deb = cached[-1]
    tree = unpack(deb, log)
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BuildError(f"no boot/vmlinuz-* in {tree}")
    kernel = Kernel(tree, kernels[-1].name[len("vmlinuz-"):])
    if not kernel.modules.is_dir():
        raise BuildError(f"no lib/modules/{kernel.version} in {tree}")
    return kernel

"""Build "tiny": a small bootable Linux guest made only from Debian packages, for fast tests.

The guest is a Debian cloud kernel plus an initramfs holding busybox-static, dropbear and the virtio modules.
At boot it reads a cloud-init NoCloud seed (ISO9660, volume id ``cidata``) for its hostname and the root
SSH keys, gets an address with DHCP and serves SSH on port 22. It is not a general-purpose image.

The build: the kernel package from the build cache (agent.imagebuild.kernel), the module load order from
kmod (``modprobe --show-depends``), the initramfs root laid out by ``scripts/tiny/make-root.sh`` (which also
installs the guest's own scripts from that directory) and archived with ``cpio -H newc``.

Layout written to ``<image_dir>/<name>/``: ``vmlinuz``, ``initrd.img``, ``disk.qcow2`` (blank) and
``image.json``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent.imagebuild import cache
from agent.imagebuild.kernel import cloud_kernel, module_name
from agent.imagebuild.steps import BuildError, Log, run

DISK_SIZE = "64M"
CMDLINE = "console=ttyS0 quiet panic=5"
SCRIPTS = cache.SCRIPTS / "tiny"

# Loaded in this order at boot (their dependencies are put first).
BOOT_MODULES = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "isofs",
    # The ACPI power button, so a libvirt shutdown() (ACPI) powers the guest off through busybox acpid.
    "button",
    "evdev",
]
# Loaded only when no seed is found on a virtio disk: the seed may be an IDE cdrom (/dev/sr0).
CDROM_MODULES = ["scsi_common", "scsi_mod", "libata", "ata_piix", "cdrom", "sr_mod"]

# agent/engines/qemu.py globs this for KVM probe kernels (linux-image-*/boot/vmlinuz-*); it should call
# cache.cached_kernels() instead, and then this alias goes.
cache_dir = cache.debs_dir


def cpio_newc(root: Path) -> bytes:
    """The tree under root as a gzip'd newc cpio archive owned by root, parents before their contents."""
    paths = []
    for top, dirs, files in os.walk(root):
        rel = Path(top).relative_to(root)
        paths += [str(rel / name) for name in dirs + files]
    paths.sort(key=lambda p: p.split("/"))
    archive = run(["cpio", "--quiet", "-o", "-H", "newc", "--null", "--reproducible", "-R", "0:0"],
                  cwd=root, input=("\0".join(paths) + "\0").encode(), text=False)
    return gzip.compress(archive.stdout, compresslevel=6, mtime=0)


def build_initramfs(kernel, workdir: Path) -> tuple[bytes, list[str]]:
    """The gzip'd initramfs and the names of the modules it loads at boot."""
    boot = kernel.load_order(BOOT_MODULES)
    cdrom = kernel.load_order(CDROM_MODULES, skip={module_name(p) for p in boot})
    lists = []
    for label, paths in (("boot", boot), ("cdrom", cdrom)):
        lists.append(workdir / f"{label}.modules")
        lists[-1].write_text("".join(f"{p}\n" for p in paths))
    root = workdir / "root"
    root.mkdir()
    run(["sh", str(SCRIPTS / "make-root.sh"), str(root), *map(str, lists)])
    return cpio_newc(root), [module_name(p) for p in boot]


def build_tiny(image_dir: Path, name: str = "tiny", force: bool = False, log: Log = print) -> Path:
    """Build (or return the existing) tiny image directory ``image_dir/name``."""
    target = Path(image_dir) / name
    if (target / "image.json").exists() and not force:
        log(f"tiny: {target} exists")
        return target
    kernel = cloud_kernel(lambda line: log(f"tiny: {line}"))
    log(f"tiny: building the initramfs from busybox, dropbear and {kernel.version} modules")
    with tempfile.TemporaryDirectory(prefix="ttstack-tiny-") as work, cache.staging(target) as tmp:
        initrd, modules = build_initramfs(kernel, Path(work))
        shutil.copyfile(kernel.vmlinuz, tmp / "vmlinuz")
        (tmp / "initrd.img").write_bytes(initrd)
        run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp / "disk.qcow2"), DISK_SIZE])
        meta = {
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "disk": "disk.qcow2",
            "format": "qcow2",
            "cmdline": CMDLINE,
            "os": "linux",
            "description": (f"ttstack tiny test guest: Debian {kernel.version} kernel, busybox, dropbear; "
                            "NoCloud seed for hostname and root SSH keys"),
            "kernel_version": kernel.version,
            "modules": modules,
        }
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        for path in tmp.iterdir():
            path.chmod(0o644)
    log(f"tiny: built {target} ({len(initrd) // 1024} KiB initrd)")
    return target


def main() -> None:  # pragma: no cover - manual use: python -m agent.imagebuild.tiny DIR [--force]
    import argparse

    parser = argparse.ArgumentParser(description="Build the ttstack tiny test guest image")
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    try:
        print(build_tiny(args.image_dir, args.name, args.force))
    except (BuildError, subprocess.SubprocessError) as exc:
        raise SystemExit(str(exc)) from exc


if __name__ == "__main__":  # pragma: no cover
    main()

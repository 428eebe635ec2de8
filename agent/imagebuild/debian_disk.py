"""Build "debian-12" for the VM engines: a Debian 12 cloud disk (qcow2) made from Debian packages.

1. mmdebstrap installs the packages into a directory; ``scripts/debian/disk-customize.sh`` configures
   cloud-init (NoCloud only, root and the default user ``debian`` get the seed's keys, growpart and
   resize_rootfs on) and removes per-machine identity (host keys, machine id).
2. ``mke2fs -t ext4 -d ROOT -E offset=1MiB`` writes the filesystem straight into partition 1 of a raw disk
   whose table ``sfdisk`` wrote (one partition from 1 MiB to the end: cloud-init's growpart can grow it,
   where a whole-disk filesystem cannot be grown), without mounting anything.
3. ``qemu-img convert -c -O qcow2``; the image's own kernel and initrd are copied beside it for direct
   kernel boot (``root=/dev/vda1``).

The result is a build-cache entry (agent.imagebuild.cache), built once per recipe and installed into the
agent's image directory by hard link (reflink, copy).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent.imagebuild import cache, debian
from agent.imagebuild.steps import BuildError, Log, Steps

NAME = "debian-12"
PACKAGES = ["linux-image-cloud-amd64", "systemd-sysv", "udev", "cloud-init", "cloud-guest-utils", "e2fsprogs",
            "openssh-server", "sudo", "dbus", "ifupdown", "isc-dhcp-client", "netbase", "iproute2"]
DISK_MIB = 2048  # the image's virtual size: the smallest disk a VM of it can have
PART_START_MIB = 1
CMDLINE = "root=/dev/vda1 rw console=ttyS0"
DEFAULT_USER = "debian"
CUSTOMIZE = cache.SCRIPTS / "debian" / "disk-customize.sh"
# Everything that shapes the image; with the customize script's bytes it makes the cache key. Bump
# "revision" when this module changes what it builds in a way the rest does not show.
RECIPE = {"name": NAME, "engine": "qemu", "revision": 1, "suite": debian.SUITE, "packages": PACKAGES,
          "dpkg": debian.DPKG_FILTERS, "disk_mib": DISK_MIB, "partition": f"dos, one from {PART_START_MIB} MiB",
          "fs": "ext4", "format": "qcow2 compressed", "cmdline": CMDLINE, "user": DEFAULT_USER}


def cache_entry() -> Path:
    """Where this recipe's image is (or will be) in the build cache."""
    return cache.images_dir() / f"{NAME}-qemu-{cache.recipe_key(RECIPE, [CUSTOMIZE])}"


def write_disk(steps: Steps, root: Path, raw: Path) -> None:
    """A raw disk of DISK_MIB: an MBR with one Linux partition from 1 MiB, holding an ext4 of ``root``."""
    with open(raw, "wb") as fh:
        fh.truncate(DISK_MIB << 20)
    steps.quiet("partition table (sfdisk)", ["sfdisk", "--quiet", str(raw)],
                input=f"label: dos\nstart={PART_START_MIB << 11}, type=83\n")
    steps.quiet("ext4 filesystem of the root (mke2fs -d)",
                ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-E", f"offset={PART_START_MIB << 20}",
                 "-d", str(root), str(raw), f"{DISK_MIB - PART_START_MIB}M"])


def boot_files(root: Path, out: Path) -> str:
    """Copy the image's newest kernel and its initrd to out/vmlinuz, out/initrd.img; returns its version."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BuildError(f"{NAME}: mmdebstrap installed no kernel (no /boot/vmlinuz-*)")
    version = kernels[-1].name[len("vmlinuz-"):]
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise BuildError(f"{NAME}: no /boot/initrd.img-{version} (initramfs-tools did not run)")
    for src, name in ((kernels[-1], "vmlinuz"), (initrd, "initrd.img")):
        shutil.copyfile(src, out / name)
    return version


def package_manifest(root: Path) -> str:
    result = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                             "${Package}=${Version}\n"], capture_output=True, text=True, check=True)
    return "".join(sorted(result.stdout.splitlines(keepends=True)))


def build_entry(entry: Path, log: Log) -> None:
    """Build the image into the cache entry (atomically: nothing appears there unless every step worked)."""
    steps = Steps(NAME, total=4, log=log)
    mirrors = debian.mirror_lines()
    steps.say(f"building from {', '.join(mirrors)}")
    with tempfile.TemporaryDirectory(dir=entry.parent, prefix=f".{entry.name}-work-") as work, \
            cache.staging(entry) as out:
        os.chmod(work, 0o755)  # apt downloads as _apt, which must reach the new root's lists
        root, raw = Path(work) / "root", Path(work) / "disk.raw"
        steps.stream("Debian packages into a root (mmdebstrap)",
                     debian.mmdebstrap_argv(root, PACKAGES, CUSTOMIZE, mirrors))
        kernel_version = boot_files(root, out)
        (out / "packages.txt").write_text(package_manifest(root))
        write_disk(steps, root, raw)
        shutil.rmtree(root)
        steps.quiet("compressed qcow2 (qemu-img convert -c)",
                    ["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(out / "disk.qcow2")])
        disk = out / "disk.qcow2"
        meta = {
            "disk": "disk.qcow2",
            "format": "qcow2",
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "cmdline": CMDLINE,
            "os": "debian",
            "version": debian.VERSION,
            "default_user": DEFAULT_USER,
            "description": f"Debian {debian.VERSION} ({debian.SUITE}) cloud image: systemd, cloud-init (NoCloud), "
                           "openssh-server, sudo; the root partition grows to the VM's disk",
            "size": disk.stat().st_size,
            "virtual_size": DISK_MIB << 20,
            "sha256": cache.sha256_of(disk),
            "build_date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "kernel_version": kernel_version,
            "packages": "packages.txt",
            "build_key": entry.name.rsplit("-", 1)[-1],
        }
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        for file in out.iterdir():
            os.chmod(file, 0o644)
    steps.finished(f"built {entry} ({meta['size'] >> 20} MiB qcow2)")


def build(image_dir: Path, force: bool = False, log: Log = print) -> Path:
    """The image in the cache (built when missing or forced), installed as ``image_dir/debian-12``."""
    entry = cache_entry()
    with cache.locked(entry):
        if force or not (entry / "image.json").is_file():
            build_entry(entry, log)
        else:
            log(f"{NAME}: cached in {entry}")
        return cache.install_image(entry, Path(image_dir) / NAME, log)

"""Build "tiny": a small bootable Linux guest made only from Debian packages.

The guest is a Debian cloud kernel plus an initramfs holding busybox-static, dropbear and the virtio modules.
At boot it reads a cloud-init NoCloud seed (ISO9660, volume id ``cidata``) for its hostname and the root
SSH keys, gets an address with DHCP and serves SSH on port 22. It exists so the agent's VM engines can be
tested for real on a machine with no internet access; it is not a general-purpose image.

Layout written to ``<image_dir>/<name>/``: ``vmlinuz``, ``initrd.img``, ``disk.qcow2`` (blank) and
``image.json``.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import lzma
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
DISK_SIZE = "64M"
CMDLINE = "console=ttyS0 quiet panic=5"

# Loaded in this order at boot (their dependencies are put first automatically).
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

DROPBEAR_BINARIES = ["/usr/sbin/dropbear", "/usr/bin/dropbearkey"]
BUSYBOX = "/bin/busybox"

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- cache / kernel


def cache_dir() -> pathlib.Path:
    """Where downloaded and unpacked Debian packages are kept between builds."""
    override = os.environ.get("TTSTACK_CACHE_DIR")
    if override:
        return pathlib.Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "ttstack"


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def kernel_package_name() -> str:
    """The versioned kernel package the meta package points at, e.g. linux-image-6.1.0-56-cloud-amd64."""
    out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+-cloud-amd64)\s*$", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"apt-cache depends {KERNEL_META_PACKAGE} names no linux-image-*-cloud-amd64 package")


def _cached_debs(cache: pathlib.Path, package: str | None = None) -> list[pathlib.Path]:
    pattern = f"{package}_*.deb" if package else "linux-image-*-cloud-amd64_*.deb"
    return sorted(pathlib.Path(p) for p in glob.glob(str(cache / pattern)))


def fetch_kernel_deb(log: Log = print) -> pathlib.Path:
    """The kernel .deb in the cache, downloaded with ``apt-get download`` when it is not there yet."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        package = kernel_package_name()
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        debs = _cached_debs(cache)
        if debs:
            log(f"tiny: cannot resolve {KERNEL_META_PACKAGE} ({exc}); using cached {debs[-1].name}")
            return debs[-1]
        raise
    debs = _cached_debs(cache, package)
    if debs:
        return debs[-1]
    log(f"tiny: downloading {package} into {cache}")
    # Download into a private directory, then move: a concurrent build never sees half a file.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".dl-") as tmp:
        try:
            _run(["apt-get", "download", package], cwd=tmp)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"apt-get download {package} failed: {exc.stderr.strip()}") from exc
        got = sorted(pathlib.Path(tmp).glob(f"{package}_*.deb"))
        if not got:
            raise RuntimeError(f"apt-get download {package} produced no .deb")
        target = cache / got[-1].name
        os.replace(got[-1], target)
    return target


def unpack_kernel(deb: pathlib.Path, log: Log = print) -> pathlib.Path:
    """Unpack the kernel .deb once into the cache; returns the unpacked tree."""
    tree = deb.with_suffix("")
    if (tree / ".complete").exists():
        return tree
    log(f"tiny: unpacking {deb.name}")
    tmp = pathlib.Path(tempfile.mkdtemp(dir=deb.parent, prefix=".x-"))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
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


def _kernel_files(tree: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(vmlinuz, lib/modules/<version>) of an unpacked kernel package."""
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError(f"no boot/vmlinuz-* in {tree}")
    version = kernels[-1].name[len("vmlinuz-") :]
    moddir = tree / "lib" / "modules" / version
    if not moddir.is_dir():
        raise RuntimeError(f"no lib/modules/{version} in {tree}")
    return kernels[-1], moddir


# ---------------------------------------------------------------------------------------------- modules


def _read_module(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def module_depends(ko: bytes) -> list[str]:
    """The ``depends=`` list from a kernel module's .modinfo ELF section (no modinfo binary needed)."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2:
        raise ValueError("not an ELF64 kernel module")
    endian = "<" if ko[5] == 1 else ">"
    shoff = struct.unpack_from(endian + "Q", ko, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(endian + "IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name_off, offset, size = section(i)
        name = ko[stroff + name_off : ko.index(b"\0", stroff + name_off)]
        if name == b".modinfo":
            for entry in ko[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    value = entry[len(b"depends=") :].decode()
                    return [d for d in value.split(",") if d]
            return []
    return []


def _find_modules(moddir: pathlib.Path) -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for path in (moddir / "kernel").rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        found.setdefault(name, path)
        found.setdefault(name.replace("-", "_"), path)
    return found


def resolve_modules(moddir: pathlib.Path, wanted: Iterable[str], skip: Iterable[str] = ()) -> list[tuple[str, bytes]]:
    """Modules in load order (dependencies first) as (name, uncompressed .ko). Built-ins are skipped."""
    available = _find_modules(moddir)
    builtin = set()
    builtin_file = moddir / "modules.builtin"
    if builtin_file.exists():
        for line in builtin_file.read_text().splitlines():
            builtin.add(pathlib.Path(line).name.split(".ko")[0].replace("-", "_"))
    done: set[str] = {s.replace("-", "_") for s in skip}
    order: list[tuple[str, bytes]] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in done:
            return
        if key in stack:
            raise RuntimeError(f"module dependency cycle: {' -> '.join(stack + (key,))}")
        if key not in available:
            if key in builtin:
                done.add(key)
                return
            raise RuntimeError(f"kernel module {name} is neither in {moddir} nor built in")
        data = _read_module(available[key])
        for dep in module_depends(data):
            visit(dep, stack + (key,))
        done.add(key)
        order.append((key, data))

    for name in wanted:
        visit(name, ())
    return order


# ------------------------------------------------------------------------------------------------- cpio


class Initramfs:
    """An in-memory newc cpio archive: directories, files, symlinks and device nodes, parents first."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int, int]] = {}  # path -> (mode, data, rdevmajor, rdevminor)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent and parent not in self.entries:
                self.entries[parent] = (0o040755, b"", 0, 0)

    def dir(self, path: str, perm: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (0o040000 | perm, b"", 0, 0)

    def file(self, path: str, data: bytes | str, perm: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        if isinstance(data, str):
            data = data.encode()
        self.entries[path] = (0o100000 | perm, data, 0, 0)

    def copy(self, path: str, src: str | os.PathLike, perm: int | None = None) -> None:
        src = pathlib.Path(src)
        mode = src.stat().st_mode & 0o7777 if perm is None else perm
        self.file(path, src.read_bytes(), mode)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (0o120777, target.encode(), 0, 0)

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (0o020000 | perm, b"", major, minor)

    def __contains__(self, path: str) -> bool:
        return path.strip("/") in self.entries

    def to_bytes(self) -> bytes:
        out = io.BytesIO()

        def pad() -> None:
            out.write(b"\0" * (-out.tell() % 4))

        def entry(ino: int, name: str, mode: int, data: bytes, rmaj: int, rmin: int) -> None:
            encoded = name.encode() + b"\0"
            nlink = 2 if mode & 0o170000 == 0o040000 else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(encoded), 0)
            out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.write(encoded)
            pad()
            out.write(data)
            pad()

        for ino, path in enumerate(sorted(self.entries, key=lambda p: p.split("/")), start=1):
            mode, data, rmaj, rmin = self.entries[path]
            entry(ino, path, mode, data, rmaj, rmin)
        entry(0, "TRAILER!!!", 0, b"", 0, 0)
        return out.getvalue()

    def to_gzip(self) -> bytes:
        return gzip.compress(self.to_bytes(), compresslevel=6, mtime=0)


# -------------------------------------------------------------------------------------------- guest files

# PID 1. It prepares the system, then hands over to busybox init (which reaps orphans and powers off cleanly).
INIT_SCRIPT = r"""#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
say() { echo "ttstack-tiny: $*"; }
say "init started, kernel $(uname -r)"

load_modules() {
    for m in $(cat "$1"); do
        insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"
    done
}
load_modules /etc/tiny/modules

SEED=/run/seed
mkdir -p "$SEED"
try_seed() {
    for dev in /dev/vd[a-z] /dev/sr[0-9]; do
        [ -b "$dev" ] || continue
        if mount -t iso9660 -o ro "$dev" "$SEED" 2>/dev/null; then
            if [ -f "$SEED/meta-data" ]; then
                say "seed found on $dev"
                return 0
            fi
            umount "$SEED"
        fi
    done
    return 1
}
find_seed() {
    i=0
    while [ $i -lt 10 ]; do
        try_seed && return 0
        usleep 200000
        i=$((i + 1))
    done
    load_modules /etc/tiny/modules.cdrom
    i=0
    while [ $i -lt 15 ]; do
        try_seed && return 0
        usleep 200000
        i=$((i + 1))
    done
    return 1
}

# First value of "key: value" in a flat YAML file, without quotes.
yaml_value() {
    sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1 | tr -d '\r' | sed -e 's/^"\(.*\)"[[:space:]]*$/\1/' \
        -e "s/^'\(.*\)'[[:space:]]*\$/\1/" -e 's/[[:space:]]*$//'
}

HOSTNAME=tiny
mkdir -p /root/.ssh
chmod 700 /root /root/.ssh
: > /root/.ssh/authorized_keys
if find_seed; then
    name=$(yaml_value local-hostname "$SEED/meta-data")
    [ -n "$name" ] || name=$(yaml_value instance-id "$SEED/meta-data")
    [ -n "$name" ] && HOSTNAME=$name
    if [ -f "$SEED/user-data" ]; then
        # Every YAML list item that is an OpenSSH public key, wherever it is nested.
        tr -d '\r' < "$SEED/user-data" \
            | grep -E "^[[:space:]]*-[[:space:]]*[\"']?(ssh-|ecdsa-|sk-)" \
            | sed -e 's/^[[:space:]]*-[[:space:]]*//' -e 's/^"\(.*\)"[[:space:]]*$/\1/' \
                  -e "s/^'\(.*\)'[[:space:]]*\$/\1/" \
            | sort -u > /root/.ssh/authorized_keys
    fi
    umount "$SEED"
else
    say "no cidata seed found"
fi
chmod 600 /root/.ssh/authorized_keys
say "authorized keys: $(grep -c . /root/.ssh/authorized_keys)"

hostname "$HOSTNAME"
echo "$HOSTNAME" > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$HOSTNAME" > /etc/hosts

ifconfig lo 127.0.0.1 up
IP=
if [ -e /sys/class/net/eth0 ]; then
    ifconfig eth0 up
    udhcpc -i eth0 -s /etc/udhcpc.script -t 20 -T 1 -A 2 -b -p /run/udhcpc.pid >/dev/null 2>&1
    [ -f /run/ip ] && IP=$(cat /run/ip)
else
    say "no eth0"
fi

mkdir -p /etc/dropbear
dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>&1 \
    || cp /etc/tiny/dropbear_ed25519_host_key /etc/dropbear/dropbear_ed25519_host_key
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -p 22 -s -P /run/dropbear.pid
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid

say "ready ip=${IP:-none} hostname=$HOSTNAME"
exec /sbin/init
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0 up
    ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    if [ -n "$router" ]; then
        while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
        for r in $router; do route add default gw "$r" dev "$interface"; break; done
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$ip" > /run/ip
    ;;
esac
exit 0
"""

INITTAB = """\
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/echo ttstack-tiny: shutting down
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
ttyS0::respawn:/bin/sh -l
"""

POWER_BUTTON = """\
#!/bin/sh
echo "ttstack-tiny: power button" > /dev/console
exec /sbin/poweroff
"""

PROFILE = """\
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='\\h:\\w\\$ '
"""


def _ldd(binary: str) -> list[str]:
    """Shared objects (absolute paths, loader included) a dynamic binary needs."""
    out = _run(["ldd", binary]).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    return libs


def _host_key(tmp: pathlib.Path) -> bytes:
    """A fallback dropbear host key; the guest makes its own at boot and uses this one only if that fails."""
    path = tmp / "hostkey"
    _run(["dropbearkey", "-t", "ed25519", "-f", str(path)])
    data = path.read_bytes()
    path.unlink()
    return data


def build_initramfs(moddir: pathlib.Path, tmp: pathlib.Path) -> tuple[bytes, list[str]]:
    """The gzip'd initramfs and the names of the modules it loads at boot."""
    fs = Initramfs()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "mnt", "var/log",
              "etc/tiny", "lib/modules", "lib/x86_64-linux-gnu", "lib64"):
        fs.dir(d)
    fs.dir("root", 0o700)
    fs.dir("tmp", 0o1777)
    fs.symlink("var/run", "../run")
    fs.chardev("dev/console", 5, 1, 0o600)
    fs.chardev("dev/null", 1, 3, 0o666)
    fs.chardev("dev/ttyS0", 4, 64, 0o600)

    # busybox and every applet it offers, where it says the applet belongs
    fs.copy("bin/busybox", BUSYBOX, 0o755)
    applets = _run([BUSYBOX, "--list-full"]).stdout.split()
    for applet in applets:
        if applet not in fs and applet != "bin/busybox":
            depth = applet.count("/")
            fs.symlink(applet, "../" * depth + "bin/busybox")

    # dropbear with its shared libraries and the loader
    for binary in DROPBEAR_BINARIES:
        fs.copy(binary.lstrip("/"), binary, 0o755)
        for lib in _ldd(binary):
            dest = lib.lstrip("/")
            if dest.startswith("usr/lib/"):
                dest = dest[len("usr/") :]
            if dest not in fs:
                fs.copy(dest, os.path.realpath(lib), 0o755)
    fs.file("etc/tiny/dropbear_ed25519_host_key", _host_key(tmp), 0o600)

    # kernel modules, flat, with the load order in a list
    boot = resolve_modules(moddir, BOOT_MODULES)
    cdrom = resolve_modules(moddir, CDROM_MODULES, skip=[n for n, _ in boot])
    for name, data in boot + cdrom:
        fs.file(f"lib/modules/{name}.ko", data, 0o644)
    fs.file("etc/tiny/modules", "".join(f"{n}\n" for n, _ in boot))
    fs.file("etc/tiny/modules.cdrom", "".join(f"{n}\n" for n, _ in cdrom))

    fs.file("init", INIT_SCRIPT, 0o755)
    fs.file("etc/udhcpc.script", UDHCPC_SCRIPT, 0o755)
    fs.file("etc/inittab", INITTAB)
    fs.file("etc/acpi/PWRF/00000080", POWER_BUTTON, 0o755)
    fs.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534:sshd:/run:/bin/false\n")
    fs.file("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)
    fs.file("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    fs.file("etc/shells", "/bin/sh\n/bin/ash\n")
    fs.file("etc/profile", PROFILE)
    fs.file("etc/hostname", "tiny\n")
    fs.file("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    return fs.to_gzip(), [n for n, _ in boot]


# ------------------------------------------------------------------------------------------------- image


def build_tiny(image_dir: pathlib.Path, name: str = "tiny", force: bool = False, log: Log = print) -> pathlib.Path:
    """Build (or return the existing) tiny image directory ``image_dir/name``."""
    image_dir = pathlib.Path(image_dir)
    target = image_dir / name
    if (target / "image.json").exists() and not force:
        log(f"tiny: {target} exists")
        return target
    image_dir.mkdir(parents=True, exist_ok=True)

    deb = fetch_kernel_deb(log)
    tree = unpack_kernel(deb, log)
    vmlinuz, moddir = _kernel_files(tree)

    tmp = pathlib.Path(tempfile.mkdtemp(dir=image_dir, prefix=f".{name}-build-"))
    try:
        log(f"tiny: building initramfs from busybox, dropbear and {moddir.name} modules")
        initrd, modules = build_initramfs(moddir, tmp)
        shutil.copyfile(vmlinuz, tmp / "vmlinuz")
        (tmp / "initrd.img").write_bytes(initrd)
        log(f"tiny: creating blank {DISK_SIZE} disk")
        _run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp / "disk.qcow2"), DISK_SIZE])
        meta = {
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "disk": "disk.qcow2",
            "format": "qcow2",
            "cmdline": CMDLINE,
            "os": "linux",
            "description": (
                f"ttstack tiny test guest: Debian {vmlinuz.name[len('vmlinuz-'):]} kernel, busybox, dropbear; "
                "NoCloud seed for hostname and root SSH keys"
            ),
            "kernel_version": vmlinuz.name[len("vmlinuz-") :],
            "modules": modules,
        }
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        os.chmod(tmp, 0o755)
        if target.exists():
            old = pathlib.Path(tempfile.mkdtemp(dir=image_dir, prefix=f".{name}-old-"))
            os.rename(target, old / name)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"tiny: built {target} ({len(initrd) // 1024} KiB initrd)")
    return target


def main() -> None:  # pragma: no cover - manual use: python -m agent.imagebuild.tiny DIR [--force]
    import argparse

    parser = argparse.ArgumentParser(description="Build the ttstack tiny test guest image")
    parser.add_argument("image_dir", type=pathlib.Path)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    print(build_tiny(args.image_dir, args.name, args.force))


if __name__ == "__main__":  # pragma: no cover
    main()

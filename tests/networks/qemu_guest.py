"""A test image made from the tiny guest: the same kernel and initramfs, with an init that also

- connects out as soon as eth0 has its address, when the kernel command line says `tt.connect=ADDR:PORT`
  (the first thing the guest does on the network; the console says `connect-out: connected|failed`), and
- puts eth1 on the environment network with the address and name server of the seed's network-config.

The tiny initramfs is kept as it is; a second cpio archive appended to it replaces /init (the kernel unpacks
both, the later one wins).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from agent.imagebuild import tiny as tiny_build

TINY_INIT = Path(tiny_build.__file__).with_name("scripts") / "tiny" / "init.sh"

SEED_COPY_AT = '    umount "$SEED"\nelse'
NETWORK_UP_AT = 'mkdir -p /etc/dropbear'

SEED_COPY = '    cp "$SEED/network-config" /run/network-config 2>/dev/null\n'
NETWORK_UP = r"""for word in $(cat /proc/cmdline); do
    case "$word" in
    tt.connect=*)
        target=${word#tt.connect=}
        if echo first | nc -w 3 "${target%:*}" "${target#*:}" >/dev/null 2>&1; then
            say "connect-out: connected"
        else
            say "connect-out: failed"
        fi ;;
    esac
done
if [ -f /run/network-config ] && [ -e /sys/class/net/eth1 ]; then
    addr=$(sed -n 's/^[ -]*\([0-9.]*\/[0-9]*\)[[:space:]]*$/\1/p' /run/network-config | head -n 1)
    dns=$(sed -n 's/^[ -]*\([0-9]*\.[0-9]*\.[0-9]*\.[0-9]*\)[[:space:]]*$/\1/p' /run/network-config | head -n 1)
    ip addr add "$addr" dev eth1 && ip link set eth1 up
    { echo "nameserver $dns"; cat /etc/resolv.conf 2>/dev/null; } > /run/resolv.conf
    cp /run/resolv.conf /etc/resolv.conf
    say "env network: eth1 $addr, name server $dns"
fi

"""


def init_script() -> str:
    original = TINY_INIT.read_text()
    for anchor in (SEED_COPY_AT, NETWORK_UP_AT):
        assert original.count(anchor) == 1, f"the tiny init changed: {anchor!r} not found once"
    script = original.replace(SEED_COPY_AT, SEED_COPY + SEED_COPY_AT)
    return script.replace(NETWORK_UP_AT, NETWORK_UP + NETWORK_UP_AT)


def make_image(tiny: Path, image_dir: Path, name: str, cmdline_extra: str = "") -> Path:
    """IMAGE_DIR/name: tiny's kernel and disk, its initramfs plus the test init, tiny's command line plus
    `cmdline_extra`."""
    target = image_dir / name
    target.mkdir(parents=True)
    meta = json.loads((tiny / "image.json").read_text())
    for key in ("kernel", "disk"):
        shutil.copyfile(tiny / meta[key], target / meta[key])
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "init").write_text(init_script())
        (Path(root) / "init").chmod(0o755)
        overlay = tiny_build.cpio_newc(Path(root))
    (target / meta["initrd"]).write_bytes((tiny / meta["initrd"]).read_bytes() + overlay)
    meta["cmdline"] = f"{meta['cmdline']} {cmdline_extra}".strip()
    meta["description"] = f"tiny test guest ({name})"
    (target / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    for path in [target, *target.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target

"""Can the user qemu runs as reach the VM's files and /dev/kvm? Host permission checks of the qemu engine.

libvirt's DAC security driver runs qemu as an unprivileged user (Debian: libvirt-qemu); its uid/gid is
in the connection's capabilities (`<secmodel><model>dac</model><baselabel>+64055:+994</baselabel>`).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

from agent.engines.base import EngineError

log = logging.getLogger(__name__)

Identity = tuple[int, set[int]]  # (uid, gids)


def dac_identity(capabilities_xml: str) -> Identity | None:
    """(uid, gids) qemu runs as under the DAC security driver, None if root or unknown."""
    try:
        caps = ET.fromstring(capabilities_xml)
    except ET.ParseError:
        return None
    for model in caps.iter("secmodel"):
        if model.findtext("model") != "dac":
            continue
        for base in model.findall("baselabel"):
            found = re.match(r"\+?(\d+):\+?(\d+)", base.text or "")
            if not found:
                continue
            uid, gid = int(found.group(1)), int(found.group(2))
            if uid == 0:
                return None
            gids = {gid}
            try:  # as libvirt does: the passwd primary group and its list, plus the label's group
                entry = pwd.getpwuid(uid)
                gids.add(entry.pw_gid)
                gids.update(os.getgrouplist(entry.pw_name, entry.pw_gid))
            except (KeyError, OSError):
                pass
            return uid, gids
    return None


def _allows(st: os.stat_result, ident: Identity, bits: int) -> bool:
    """Does the owner/group/other class that `ident` falls in have all of `bits` (given as rwx = 0o7)?"""
    uid, gids = ident
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
    return (st.st_mode >> shift) & bits == bits


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_reachable(paths: list[Path], ident: Identity) -> None:
    """EngineError, with the reason, when qemu's user cannot walk to one of the guest's files."""
    for path in paths:
        for parent in list(Path(path).resolve().parents)[::-1]:
            st = parent.stat()
            if not _allows(st, ident, 0o1):
                raise EngineError(
                    f"qemu runs as {_user_name(ident[0])} and cannot reach {path}: directory {parent} is not "
                    f"searchable (mode {stat.S_IMODE(st.st_mode):o}); keep VM files under a directory others "
                    "may traverse"
                )


def warn_if_kvm_unusable(ident: Identity, device: str = "/dev/kvm") -> None:
    """libvirt re-probes qemu (seconds, serialised) on every call when /dev/kvm is usable by root only:
    its capabilities cache says "kvm" while the qemu user cannot open the device, so the cache never
    validates. udev normally makes /dev/kvm root:kvm 0660; containers without udev do not."""
    try:
        st = os.stat(device)
    except FileNotFoundError:
        return
    if not _allows(st, ident, 0o6):
        log.warning("%s (mode %o, gid %d) is not usable by qemu's user: every libvirt call will re-probe qemu "
                    "and take seconds; run `chgrp kvm /dev/kvm && chmod 0660 /dev/kvm` (what udev does on a "
                    "normal Debian host)", device, stat.S_IMODE(st.st_mode), st.st_gid)

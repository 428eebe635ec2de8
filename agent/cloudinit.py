"""cloud-init NoCloud seeds: an ISO9660 image with volume id ``cidata`` holding ``meta-data`` and ``user-data``.

Both files are written with PyYAML (``yaml.safe_dump``): cloud-init reads YAML 1.1, where an unquoted
``yes``, ``on``, ``null``, ``42``, ``0x1F`` or ``2026-12-01`` is not a string, so a hostname or instance id
like that must be quoted -- the emitter does it. Real cloud images read the seed with cloud-init; the tiny
test guest reads the same files with a shell script, which is why the layout stays simple: flat
``key: value`` meta-data and one list item per line in user-data.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

VOLUME_ID = "cidata"

# What ssh-keygen makes and OpenSSH servers accept; DSA (ssh-dss) is refused by modern servers, so here too.
ACCEPTED_KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")


def _embedded_type(raw: bytes) -> bytes | None:
    """The key type the blob names first (an SSH string: 4-byte length, then the name)."""
    if len(raw) < 4:
        return None
    (length,) = struct.unpack(">I", raw[:4])
    return raw[4:4 + length] if length <= len(raw) - 4 else None


def validate_ssh_key(key: str) -> str:
    """Check an OpenSSH public key line and return it normalised (single spaces, no surrounding blanks).

    Accepted: ``TYPE BASE64 [COMMENT]`` where TYPE is one of ACCEPTED_KEY_TYPES and the blob is a key of that
    type (loaded with cryptography's `load_ssh_public_key`). Raises ValueError with the reason otherwise.
    """
    if not isinstance(key, str):
        raise ValueError("SSH key must be a string")
    key = key.strip()  # a trailing newline, as in a .pub file, is not an error
    if any(c in key for c in "\r\n\0"):
        raise ValueError("SSH key must be a single line")
    parts = key.split(None, 2)
    if not parts:
        raise ValueError("SSH key is empty")
    if len(parts) < 2:
        raise ValueError("SSH key must be 'TYPE BASE64 [COMMENT]'")
    ktype, blob = parts[0], parts[1]
    if ktype not in ACCEPTED_KEY_TYPES:
        raise ValueError(
            f"unsupported SSH key type {ktype[:40]!r}; expected one of {', '.join(sorted(ACCEPTED_KEY_TYPES))}"
        )
    if not _BASE64.match(blob) or len(blob) % 4:
        raise ValueError("SSH key data is not valid base64")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"SSH key data is not valid base64: {exc}") from exc
    if _embedded_type(raw) != ktype.encode():
        raise ValueError(f"SSH key data does not match its type {ktype!r}")
    if len(raw) <= 4 + len(ktype):
        raise ValueError("SSH key data holds no key material")
    try:
        load_ssh_public_key(f"{ktype} {blob}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"SSH key data is not a valid {ktype} key: {exc}") from exc
    normalised = f"{ktype} {blob}"
    if len(parts) == 3:
        comment = " ".join(parts[2].split())
        if any(ord(c) < 32 or ord(c) == 127 for c in comment):
            raise ValueError("SSH key comment contains control characters")
        if comment:
            normalised += f" {comment}"
    return normalised


class _SeedDumper(yaml.SafeDumper):
    """safe_dump, with list items indented under their key ("users:\n  - default") as cloud-init's docs
    write them."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _dump(data: dict) -> str:
    # width: never fold a long line (an SSH key) in two.
    return yaml.dump(data, Dumper=_SeedDumper, sort_keys=False, default_flow_style=False, width=1 << 16,
                     allow_unicode=False)


def meta_data(instance_id: str, hostname: str) -> str:
    return _dump({"instance-id": instance_id, "local-hostname": hostname})


def user_data(hostname: str, ssh_keys: list[str]) -> str:
    return "#cloud-config\n" + _dump({
        "hostname": hostname,
        "preserve_hostname": False,
        # root gets the keys too (without the "login as the default user" prefix) on real cloud images
        "disable_root": False,
        # No ssh_pwauth: cloud-init would rewrite sshd's config and restart it after sshd first answered,
        # resetting the connections of a user who saw the VM ready. The images turn passwords off themselves.
        "users": ["default"],
        "ssh_authorized_keys": list(ssh_keys),
    })


def _iso_tool() -> str:
    for tool in ("genisoimage", "xorrisofs", "mkisofs"):
        path = shutil.which(tool)
        if path:
            return path
    raise RuntimeError("no ISO9660 tool found: install genisoimage (or xorriso)")


def build_seed(path: Path, instance_id: str, hostname: str, ssh_keys: list[str],
               network_config: dict | None = None) -> Path:
    """Write a NoCloud seed ISO at path (atomically) and return path. Keys are validated first.
    `network_config` (cloud-init network config version 2) becomes the seed's ``network-config`` file."""
    path = Path(path)
    keys = [validate_ssh_key(k) for k in ssh_keys]
    for label, value in (("instance_id", instance_id), ("hostname", hostname)):
        if not value or any(c in value for c in "\r\n\0"):
            raise ValueError(f"{label} must be a non-empty single line")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".seed-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "meta-data").write_text(meta_data(instance_id, hostname))
        (src / "user-data").write_text(user_data(hostname, keys))
        files = [str(src / "user-data"), str(src / "meta-data")]
        if network_config:
            (src / "network-config").write_text(_dump(network_config))
            files.append(str(src / "network-config"))
        out = Path(tmp) / "seed.iso"
        args = [_iso_tool(), "-quiet", "-output", str(out), "-volid", VOLUME_ID, "-joliet", "-rock", *files]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building seed ISO failed: {result.stderr.strip()}")
        os.chmod(out, 0o644)
        os.replace(out, path)
    return path

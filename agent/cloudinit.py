"""cloud-init NoCloud seeds: an ISO9660 image with volume id ``cidata`` holding ``meta-data`` and ``user-data``.

Real cloud images read it with cloud-init; the tiny test guest reads the same two files with a shell script,
so the layout stays simple: flat ``key: value`` meta-data and one key per list item in user-data.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

VOLUME_ID = "cidata"

KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}
# What ssh-keygen accepts for new keys; DSA is refused by modern OpenSSH servers, so we refuse it too.
ACCEPTED_KEY_TYPES = KEY_TYPES - {"ssh-dss"}

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def validate_ssh_key(key: str) -> str:
    """Check an OpenSSH public key line and return it normalised (single spaces, no surrounding blanks).

    Accepted: ``TYPE BASE64 [COMMENT]`` where TYPE is one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521,
    sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com, and the base64 blob decodes to a key
    whose embedded type string equals TYPE. Raises ValueError with the reason otherwise.
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
    if len(raw) < 4:
        raise ValueError("SSH key data is too short")
    (length,) = struct.unpack(">I", raw[:4])
    embedded = raw[4 : 4 + length]
    if length > len(raw) - 4 or embedded != ktype.encode():
        raise ValueError(f"SSH key data does not match its type {ktype!r}")
    if len(raw) <= 4 + length:
        raise ValueError("SSH key data holds no key material")
    normalised = f"{ktype} {blob}"
    if len(parts) == 3:
        comment = " ".join(parts[2].split())
        if any(ord(c) < 32 or ord(c) == 127 for c in comment):
            raise ValueError("SSH key comment contains control characters")
        if comment:
            normalised += f" {comment}"
    return normalised


_PLAIN_SCALAR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/+= -]*$")


def _yaml_scalar(value: str) -> str:
    """A YAML scalar for value: bare when unambiguous, else a double-quoted (JSON) string."""
    if _PLAIN_SCALAR.match(value) and not value.endswith(" ") and " #" not in value and ": " not in value:
        return value
    return json.dumps(value)


def meta_data(instance_id: str, hostname: str) -> str:
    return f"instance-id: {_yaml_scalar(instance_id)}\nlocal-hostname: {_yaml_scalar(hostname)}\n"


def user_data(hostname: str, ssh_keys: list[str]) -> str:
    keys = "".join(f"  - {_yaml_scalar(k)}\n" for k in ssh_keys)
    lines = [
        "#cloud-config",
        f"hostname: {_yaml_scalar(hostname)}",
        "preserve_hostname: false",
        # root gets the keys too (without the "login as the default user" prefix) on real cloud images
        "disable_root: false",
        "ssh_pwauth: false",
        "users:",
        "  - default",
        "ssh_authorized_keys:" + ("" if keys else " []"),
    ]
    return "\n".join(lines) + "\n" + keys


def _iso_tool() -> str:
    for tool in ("genisoimage", "xorrisofs", "mkisofs"):
        path = shutil.which(tool)
        if path:
            return path
    raise RuntimeError("no ISO9660 tool found: install genisoimage (or xorriso)")


def build_seed(path: Path, instance_id: str, hostname: str, ssh_keys: list[str]) -> Path:
    """Write a NoCloud seed ISO at path (atomically) and return path. Keys are validated first."""
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
        out = Path(tmp) / "seed.iso"
        args = [_iso_tool(), "-quiet", "-output", str(out), "-volid", VOLUME_ID, "-joliet", "-rock",
                str(src / "user-data"), str(src / "meta-data")]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building seed ISO failed: {result.stderr.strip()}")
        os.chmod(out, 0o644)
        os.replace(out, path)
    return path

"""The NoCloud seed's YAML and the SSH-key check: what cloud-init (YAML 1.1) and sshd will make of them."""

from __future__ import annotations

import base64
import struct
import subprocess

import pytest
import yaml

from agent.cloudinit import build_seed, meta_data, user_data, validate_ssh_key

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example"
# Words YAML 1.1 reads as something other than a string when they are written bare.
TRICKY = ["null", "Null", "~", "yes", "no", "on", "off", "true", "y", "42", "010", "0x1F", "1e3", ".inf",
          "2026-12-01", "2026-02-30", "12:30", "-", "web-1 # not a comment", "a: b", "'quoted'", '"dq"']


@pytest.mark.parametrize("value", TRICKY)
def test_seed_values_stay_the_exact_strings(value):
    meta = yaml.safe_load(meta_data(value, value))
    assert meta == {"instance-id": value, "local-hostname": value}
    user = yaml.safe_load(user_data(value, [KEY]))
    assert user["hostname"] == value and user["ssh_authorized_keys"] == [KEY]


def test_user_data_is_cloud_config_with_root_and_the_keys():
    text = user_data("web-1", [KEY, KEY.replace("test@example", "alice # laptop: work")])
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc == {"hostname": "web-1", "preserve_hostname": False, "disable_root": False,
                   "users": ["default"],
                   "ssh_authorized_keys": [KEY, KEY.replace("test@example", "alice # laptop: work")]}
    assert yaml.safe_load(user_data("web-1", []))["ssh_authorized_keys"] == []
    long_key = KEY.replace("test@example", "x" * 300)
    assert f"  - {long_key}\n" in user_data("h", [long_key])  # one line, never folded


def test_the_seed_iso_holds_what_was_asked(tmp_path):
    seed = build_seed(tmp_path / "seed.iso", "2026-12-01", "0x1F", [KEY])
    files = {name: subprocess.run(["isoinfo", "-R", "-i", str(seed), "-x", f"/{name}"], check=True,
                                  capture_output=True, text=True).stdout for name in ("meta-data", "user-data")}
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "2026-12-01", "local-hostname": "0x1F"}
    assert yaml.safe_load(files["user-data"])["hostname"] == "0x1F"


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


@pytest.mark.parametrize("bad, reason", [
    ("ssh-dss " + _blob(b"ssh-dss", b"p", b"q", b"g", b"y"), "unsupported SSH key type 'ssh-dss'"),
    ("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x01" * 31), "not a valid ssh-ed25519 key"),
    ("ssh-rsa " + _blob(b"ssh-rsa", b"\x01\x00\x01"), "not a valid ssh-rsa key"),
    ("ecdsa-sha2-nistp256 " + _blob(b"ecdsa-sha2-nistp256", b"nistp256", b"\x04" + b"\x00" * 64),
     "not a valid ecdsa-sha2-nistp256 key"),
    (KEY + "\n" + KEY, "single line"),
    (KEY + " \x07bell", "control characters"),
])
def test_keys_that_are_not_keys_are_refused(bad, reason):
    with pytest.raises(ValueError, match=reason):
        validate_ssh_key(bad)


def test_keys_made_by_ssh_keygen_are_accepted(tmp_path):
    for kind, bits in (("rsa", "2048"), ("ecdsa", "384"), ("ed25519", "256")):
        path = tmp_path / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-b", bits, "-N", "", "-C", "me@host", "-f", str(path)],
                       check=True)
        text = path.with_suffix(".pub").read_text()
        assert validate_ssh_key(text) == text.strip()
    sk = "sk-ssh-ed25519@openssh.com " + _blob(b"sk-ssh-ed25519@openssh.com", b"\x02" * 32, b"ssh:")
    assert validate_ssh_key(sk) == sk

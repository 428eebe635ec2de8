"""Shared setup for the engine/storage tests that drive the doubles in tests/doubles/ (see its README)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from agent.engines.base import GuestSpec, Image

DOUBLES = Path(__file__).resolve().parent.parent / "doubles"


@pytest.fixture
def doubles(monkeypatch, settings):
    """Doubles first on PATH, a fresh short state dir (Unix socket paths must stay under 108 bytes), and the
    tool and zvol options unset (whatever this process's environment set them to)."""
    state = Path(tempfile.mkdtemp(prefix="ttd-"))
    # The interpreter running the tests first after the doubles: `#!/usr/bin/env python3` then skips slow shims.
    monkeypatch.setenv("PATH", f"{DOUBLES}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("TTSTACK_DOUBLE_STATE", str(state / "state"))
    for option in ("FIRECRACKER_BIN", "JAILER_BIN", "FIRECRACKER_JAILER", "IP_BIN", "IPTABLES_BIN", "ZFS_BIN",
                   "ZFS_DATASET", "ZFS_POOL"):
        setattr(settings, f"AGENT_{option}", None)
    yield state
    shutil.rmtree(state, ignore_errors=True)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_spec(tmp: Path, vm_id: str = "vm1", *, kernel: bool = True, initrd: bool = False,
              ports: dict[int, int] | None = None, deny_outgoing: bool = False, engine_kind: str = "vm",
              image_disk: Path | None = None, cpu: int = 2, mem: int = 256) -> GuestSpec:
    images = tmp / "images"
    images.mkdir(parents=True, exist_ok=True)
    kernel_path = images / "vmlinux"
    kernel_path.write_bytes(b"\x7fELF" + b"\0" * 60)  # an ELF header is what firecracker checks first
    initrd_path = images / "initrd.img"
    initrd_path.write_bytes(b"initrd")
    disk = tmp / f"{vm_id}.raw"
    disk.write_bytes(b"\0" * 4096)
    seed = tmp / f"{vm_id}-seed.iso"
    seed.write_bytes(b"\0" * 2048)
    image = Image(name="tiny", engine_kind=engine_kind, disk=image_disk or disk, disk_format="raw",
                  kernel=kernel_path if kernel else None, initrd=initrd_path if initrd else None,
                  cmdline="console=ttyS0 reboot=k panic=1 pci=off")
    return GuestSpec(vm_id=vm_id, name=f"tt-{vm_id}", host_id="host-a", image=image, cpu=cpu, mem=mem, disk=64,
                     port_map=ports if ports is not None else {22: 20022, 80: 20080}, publish_addr="127.0.0.1",
                     deny_outgoing=deny_outgoing, hostname=vm_id,
                     ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6ZbZUSsfLyrj6vVwTJlvbZdWQW7Qw8v2Y8ZL0VZ1UF t@x"],
                     disk_path=disk, seed_path=seed, workdir=tmp / "work" / vm_id)

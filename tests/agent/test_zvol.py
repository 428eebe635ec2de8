"""zvol storage against tests/doubles/zfs; on a host with real ZFS the `realhw` test runs the same steps."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from agent.engines.base import Image
from agent.storage.base import StorageError
from agent.storage.zvol import ZvolStorage
from tests.agent.test_engines_common import doubles, read_jsonl  # noqa: F401

MiB = 1024 * 1024


def zfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["zfs", *args], capture_output=True, text=True)


@pytest.fixture
def pool(doubles):  # noqa: F811
    """tank/ttstack with one 64 MiB image volume `tiny` carrying a kernel property."""
    assert zfs("create", "tank").returncode == 0
    assert zfs("create", "-p", "-V", "64M", "tank/ttstack/images/tiny").returncode == 0
    assert zfs("set", "ttstack:kernel=/images/tiny/vmlinux", "tank/ttstack/images/tiny").returncode == 0
    return doubles


@pytest.fixture
def storage(pool):
    return ZvolStorage("tank/ttstack", dev_dir=pool / "state" / "zvol", assume_module=True)


def calls(state) -> list[list[str]]:
    return read_jsonl(state / "state" / "zfs-calls.jsonl")


def tiny() -> Image:
    return Image(name="tiny", engine_kind="vm")


def test_alias():
    from agent import storage as storages

    assert storages.canonical("zfs") == "zvol"


def test_probe_here_is_honest(monkeypatch, settings, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    settings.AGENT_ZFS_BIN = None
    ok, why = ZvolStorage("tank/ttstack").probe()
    assert not ok and "zfs binary not found" in why


def test_probe_with_double_still_checks_the_module(pool):
    ok, why = ZvolStorage("tank/ttstack", dev_dir=pool).probe()
    if not os.path.isdir("/sys/module/zfs"):
        assert not ok and "kernel module" in why


def test_probe_checks_the_dataset(pool):
    ok, why = ZvolStorage("tank/ttstack", dev_dir=pool, assume_module=True).probe()
    assert ok and "assumed" in why
    ok, why = ZvolStorage("tank/other", dev_dir=pool, assume_module=True).probe()
    assert not ok and why == "cannot open 'tank/other': dataset does not exist"
    ok, why = ZvolStorage("", dev_dir=pool, assume_module=True).probe()
    assert not ok and "TTSTACK_ZFS_DATASET" in why


def test_dataset_from_pool_setting(settings):
    settings.AGENT_ZFS_DATASET = None
    settings.AGENT_ZFS_POOL = "tank"
    assert ZvolStorage().dataset == "tank/ttstack"


def test_images_listed_from_the_dataset(storage, pool):
    images = storage.images()
    assert [i.name for i in images] == ["tiny"]
    assert images[0].disk == pool / "state" / "zvol" / "tank/ttstack/images/tiny"
    assert images[0].disk_format == "raw" and images[0].size == 64 * MiB
    assert str(images[0].kernel) == "/images/tiny/vmlinux" and images[0].initrd is None


def test_create_disk_snapshots_once_clones_and_grows(storage, pool, tmp_path):
    disk = storage.create_disk("vm1", tiny(), 128, tmp_path)
    assert disk == pool / "state" / "zvol" / "tank/ttstack/vms/vm1"
    assert disk.exists()
    assert zfs("get", "-H", "-p", "-o", "value", "volsize", "tank/ttstack/vms/vm1").stdout.strip() == str(128 * MiB)
    assert zfs("get", "-H", "-o", "value", "origin", "tank/ttstack/vms/vm1").stdout.strip() == \
        "tank/ttstack/images/tiny@ttstack-base"
    storage.create_disk("vm2", tiny(), 32, tmp_path)  # smaller than the image: stays at the image's size
    assert zfs("get", "-H", "-p", "-o", "value", "volsize", "tank/ttstack/vms/vm2").stdout.strip() == str(64 * MiB)
    snapshots = [c for c in calls(pool) if c[0] == "snapshot"]
    assert snapshots == [["snapshot", "tank/ttstack/images/tiny@ttstack-base"]]
    clones = [c for c in calls(pool) if c[0] == "clone"]
    assert clones[0] == ["clone", "-o", "ttstack:vm=vm1", "tank/ttstack/images/tiny@ttstack-base",
                         "tank/ttstack/vms/vm1"]
    assert ["set", "volsize=128M", "tank/ttstack/vms/vm1"] in calls(pool)
    # the base is never copied or written
    assert zfs("get", "-H", "-p", "-o", "value", "volsize", "tank/ttstack/images/tiny").stdout.strip() == \
        str(64 * MiB)
    assert storage.create_disk("vm1", tiny(), 128, tmp_path) == disk  # idempotent


def test_destroy_disk(storage, tmp_path):
    storage.create_disk("vm1", tiny(), 64, tmp_path)
    storage.destroy_disk("vm1", tmp_path)
    assert zfs("list", "tank/ttstack/vms/vm1").stderr.strip() == \
        "cannot open 'tank/ttstack/vms/vm1': dataset does not exist"
    storage.destroy_disk("vm1", tmp_path)  # already gone: fine
    # the snapshot stays for the next VM, but the image cannot be destroyed under a live clone
    storage.create_disk("vm2", tiny(), 64, tmp_path)
    done = zfs("destroy", "-r", "tank/ttstack/images/tiny")
    assert done.returncode == 1 and "snapshot has dependent clones" in done.stderr


def test_unknown_image_is_refused(storage, tmp_path):
    with pytest.raises(StorageError, match="'nope' is not a volume"):
        storage.create_disk("vm1", Image(name="nope", engine_kind="vm"), 64, tmp_path)


def test_busy_volume_cannot_be_destroyed(storage, tmp_path, monkeypatch):
    storage.create_disk("vm1", tiny(), 64, tmp_path)
    monkeypatch.setenv("TTSTACK_DOUBLE_ZFS_BUSY", "tank/ttstack/vms/vm1")
    with pytest.raises(StorageError, match="dataset is busy"):
        storage.destroy_disk("vm1", tmp_path)


def test_grow_failure_removes_the_clone(storage, tmp_path):
    # 100008K is not a multiple of the 16K volblocksize: zfs refuses, and the clone is removed again
    with pytest.raises(StorageError, match="multiple of volume block size"):
        _grow_odd(storage, tmp_path)
    assert zfs("list", "tank/ttstack/vms/vm1").returncode == 1


def _grow_odd(storage, tmp_path):
    original = storage._zfs

    def zfs_odd(*args, **kwargs):
        if args and args[0] == "set" and args[1].startswith("volsize="):
            args = ("set", "volsize=100008K", *args[2:])
        return original(*args, **kwargs)

    storage._zfs = zfs_odd
    return storage.create_disk("vm1", tiny(), 100, tmp_path)


def test_double_state_is_plain_json(storage, pool, tmp_path):
    storage.create_disk("vm1", tiny(), 64, tmp_path)
    db = json.loads((pool / "state" / "zfs.json").read_text())
    assert db["tank/ttstack/vms/vm1"]["props"]["origin"] == "tank/ttstack/images/tiny@ttstack-base"


@pytest.mark.realhw
def test_real_zfs_clone_cycle(tmp_path):
    ok, why = ZvolStorage().probe()
    if not ok:
        pytest.skip(f"needs ZFS with TTSTACK_ZFS_DATASET holding images/<name> volumes: {why}")
    storage = ZvolStorage()
    images = storage.images()
    if not images:
        pytest.skip(f"no image volume under {storage.dataset}/images")
    vm_id = f"test-{uuid.uuid4().hex[:8]}"
    try:
        disk = storage.create_disk(vm_id, images[0], 256, tmp_path)
        assert disk.exists()
    finally:
        storage.destroy_disk(vm_id, tmp_path)

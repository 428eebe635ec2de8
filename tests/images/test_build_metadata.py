"""What a debian-12 build leaves behind, checked with the real tools: the metadata matches the files, the
disk is partitioned as cloud-init's growpart needs, the cache is reused and its key follows the scripts."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.imagebuild import cache, debian, debian_disk, debian_docker

pytestmark = pytest.mark.timeout(1800)
MIB = 1 << 20


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """debian-12 installed into a fresh image dir (from the cache; built there first when missing)."""
    return debian_disk.build(tmp_path_factory.mktemp("images"), log=lambda _line: None)


def qemu_img_info(path: Path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


def test_disk_metadata_matches_the_files(installed):
    meta = json.loads((installed / "image.json").read_text())
    disk = installed / meta["disk"]
    assert meta["sha256"] == cache.sha256_of(disk)
    assert meta["size"] == disk.stat().st_size
    info = qemu_img_info(disk)
    assert meta["format"] == info["format"] == "qcow2"
    assert meta["virtual_size"] == info["virtual-size"] == debian_disk.DISK_MIB * MIB
    assert (meta["os"], meta["version"], meta["default_user"]) == ("debian", "12", "debian")
    built = datetime.datetime.fromisoformat(meta["build_date"])
    assert built.tzinfo is not None and built <= datetime.datetime.now(datetime.UTC)
    assert meta["cmdline"].startswith("root=/dev/vda1 ") and "console=ttyS0" in meta["cmdline"]
    # direct kernel boot with the image's own kernel, the one its package manifest names
    assert (installed / meta["kernel"]).read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    packages = dict(line.split("=", 1) for line in (installed / meta["packages"]).read_text().splitlines())
    assert f"linux-image-{meta['kernel_version']}" in packages
    for name in ("cloud-init", "cloud-guest-utils", "openssh-server", "sudo", "systemd-sysv", "e2fsprogs"):
        assert name in packages, name


def test_disk_is_one_partition_with_a_clean_ext4(installed, tmp_path):
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(installed / "disk.qcow2"), str(raw)], check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]
    assert table["label"] == "dos"
    (part,) = table["partitions"]
    assert (part["start"], part["type"]) == (2048, "83")
    assert (part["start"] + part["size"]) * 512 == raw.stat().st_size  # to the end: growpart grows it further
    fs = f"{raw}?offset={part['start'] * 512}"
    check = subprocess.run(["e2fsck", "-fn", fs], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    def cat(path: str) -> str:
        return subprocess.run(["debugfs", "-R", f"cat {path}", fs], check=True, capture_output=True,
                              text=True).stdout

    config = cat("/etc/cloud/cloud.cfg.d/90_ttstack.cfg")
    assert "datasource_list: [ NoCloud, None ]" in config and "disable_root: false" in config
    assert "name: debian" in config and 'sudo: ["ALL=(ALL) NOPASSWD:ALL"]' in config
    assert "/dev/vda1" in cat("/etc/fstab")
    # per-VM identity is made at first boot, not shared by every VM of the image
    assert cat("/etc/machine-id") == ""
    listing = subprocess.run(["debugfs", "-R", "ls /etc/ssh", fs], check=True, capture_output=True,
                             text=True).stdout
    assert "sshd_config" in listing and "ssh_host_" not in listing


def test_a_second_build_reuses_the_cache_and_links_the_files(installed, tmp_path):
    entry = debian_disk.cache_entry()
    stamp = (entry / "image.json").stat().st_mtime_ns
    lines: list[str] = []
    again = debian_disk.build(tmp_path / "images", log=lines.append)
    assert any("cached in" in line for line in lines) and not any("[1/" in line for line in lines), lines
    assert (entry / "image.json").stat().st_mtime_ns == stamp
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        assert (again / name).stat().st_ino == (entry / name).stat().st_ino  # same filesystem: a hard link
    assert (again / "image.json").read_bytes() == (entry / "image.json").read_bytes()
    lines.clear()
    debian_disk.build(tmp_path / "images", log=lines.append)
    assert any("up to date" in line for line in lines), lines
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".")]


def test_the_cache_key_follows_the_recipe_and_its_scripts(tmp_path):
    copy = tmp_path / debian_disk.CUSTOMIZE.name
    shutil.copyfile(debian_disk.CUSTOMIZE, copy)
    key = cache.recipe_key(debian_disk.RECIPE, [copy])
    assert debian_disk.cache_entry().name == f"debian-12-qemu-{key}"
    copy.write_text(copy.read_text() + "\n# one more line\n")
    assert cache.recipe_key(debian_disk.RECIPE, [copy]) != key
    assert cache.recipe_key({**debian_disk.RECIPE, "disk_mib": 4096}, [debian_disk.CUSTOMIZE]) != key
    assert debian_docker.cache_entry().name.startswith("debian-12-docker-")


def test_install_replaces_an_older_build_whole(tmp_path):
    entry, target = tmp_path / "entry", tmp_path / "images" / "img"
    entry.mkdir()
    (entry / "disk.qcow2").write_bytes(b"one")
    (entry / "image.json").write_text('{"build": 1}')
    assert cache.install_image(entry, target, log=lambda _line: None) == target
    (entry / "disk.qcow2").unlink()
    (entry / "disk.qcow2").write_bytes(b"two")
    (entry / "image.json").write_text('{"build": 2}')
    cache.install_image(entry, target, log=lambda _line: None)
    assert (target / "disk.qcow2").read_bytes() == b"two" and (target / "image.json").read_text() == '{"build": 2}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["img"]


def test_docker_build_metadata(debian_docker_image):
    entry = debian_docker.cache_entry()
    meta = json.loads((entry / "image.json").read_text())
    assert meta["sha256"] == cache.sha256_of(entry / "root.tar")
    assert meta["size"] == (entry / "root.tar").stat().st_size
    assert (meta["os"], meta["version"], meta["default_user"]) == ("debian", "12", "debian")
    assert meta["tags"] == [debian_docker.TAG, debian_docker.AGENT_TAG]
    members = subprocess.run(["tar", "-tf", str(entry / "root.tar")], check=True, capture_output=True,
                             text=True).stdout.split()
    assert "./usr/local/sbin/ttstack-entry" in members and "./usr/sbin/sshd" in members
    assert not [m for m in members if m.startswith("./etc/ssh/ssh_host_")]


def test_mirror_comes_from_this_machines_apt_sources(settings):
    policy = subprocess.run(["apt-cache", "policy"], check=True, capture_output=True, text=True).stdout
    archives = debian.apt_archives(policy)
    assert archives["Debian"].startswith("http")
    lines = debian.mirror_lines()
    assert lines[:2] == [f"deb {archives['Debian']} bookworm main", f"deb {archives['Debian']} bookworm-updates main"]
    settings.AGENT_DEBIAN_MIRROR = "http://127.0.0.1:9/debian"
    assert debian.mirror_lines()[0] == "deb http://127.0.0.1:9/debian bookworm main"

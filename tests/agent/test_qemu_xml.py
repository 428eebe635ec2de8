"""The qemu domain XML (agent/engines/qemu_xml.py), parsed back: what libvirt is asked to run."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.engines.base import EngineError, GuestSpec, Image
from agent.engines.qemu_xml import METADATA_NS, QEMU_NS, domain_xml, owner_of

CONSOLE = Path("/var/lib/ttstack/vms/v1/console.log")


def spec(**changes) -> GuestSpec:
    image = Image(name="tiny", engine_kind="vm", disk=Path("/img/tiny/disk.qcow2"),
                  kernel=Path("/img/tiny/vmlinuz"), initrd=Path("/img/tiny/initrd.img"), cmdline="console=ttyS0 quiet")
    fields = dict(vm_id="v1", name="tt-abcd1234-v1", host_id="host-a", image=image, cpu=2, mem=256, disk=1024,
                  port_map={22: 20022, 80: 20080}, publish_addr="127.0.0.1", hostname="web-1",
                  disk_path=Path("/var/lib/ttstack/vms/v1/disk.qcow2"),
                  seed_path=Path("/var/lib/ttstack/vms/v1/seed.iso"), workdir=Path("/var/lib/ttstack/vms/v1"))
    fields.update(changes)
    return GuestSpec(**fields)


def parse(guest: GuestSpec, domain_type: str = "qemu") -> ET.Element:
    return ET.fromstring(domain_xml(guest, domain_type=domain_type, console_log=CONSOLE))


def qemu_args(root: ET.Element) -> list[str]:
    return [arg.get("value") for arg in root.find(f"{{{QEMU_NS}}}commandline")]


def disks(root: ET.Element) -> dict[str, ET.Element]:
    return {disk.find("target").get("dev"): disk for disk in root.find("devices").findall("disk")}


def test_domain_identity_size_and_owner():
    root = parse(spec())
    assert root.tag == "domain" and root.get("type") == "qemu"
    assert root.findtext("name") == "tt-abcd1234-v1" and root.findtext("title") == "web-1"
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "256"
    assert root.findtext("vcpu") == "2"
    vm = root.find(f"metadata/{{{METADATA_NS}}}vm")
    assert vm.findtext(f"{{{METADATA_NS}}}id") == "v1" and vm.findtext(f"{{{METADATA_NS}}}host") == "host-a"
    assert owner_of(ET.tostring(vm, encoding="unicode")) == ("v1", "host-a")
    assert owner_of("<other/>") is None and owner_of("not xml") is None
    assert root.find("cpu").get("mode") == "maximum"  # TCG
    assert parse(spec(), "kvm").find("cpu").get("mode") == "host-passthrough"


def test_disk_and_read_only_seed():
    found = disks(parse(spec()))
    assert set(found) == {"vda", "vdb"}
    vda, vdb = found["vda"], found["vdb"]
    assert vda.get("type") == "file" and vda.find("source").get("file") == "/var/lib/ttstack/vms/v1/disk.qcow2"
    assert vda.find("driver").get("type") == "qcow2" and vda.find("target").get("bus") == "virtio"
    assert vda.find("readonly") is None
    assert vdb.find("source").get("file") == "/var/lib/ttstack/vms/v1/seed.iso"
    assert vdb.find("driver").get("type") == "raw" and vdb.find("readonly") is not None
    without_seed = disks(parse(spec(seed_path=None)))
    assert set(without_seed) == {"vda"}


def test_zvol_disk_is_a_raw_block_device():
    vda = disks(parse(spec(disk_path=Path("/dev/zvol/tank/ttstack/vms/v1"))))["vda"]
    assert vda.get("type") == "block" and vda.find("source").get("dev") == "/dev/zvol/tank/ttstack/vms/v1"
    assert vda.find("driver").get("type") == "raw"


def test_direct_kernel_boot_or_the_disks_loader():
    os_ = parse(spec()).find("os")
    assert os_.findtext("kernel") == "/img/tiny/vmlinuz" and os_.findtext("initrd") == "/img/tiny/initrd.img"
    assert os_.findtext("cmdline") == "console=ttyS0 quiet" and os_.find("boot") is None
    bios = parse(spec(image=Image(name="plain", engine_kind="vm", disk=Path("/img/plain.qcow2")))).find("os")
    assert bios.find("kernel") is None and bios.find("boot").get("dev") == "hd"


def test_user_network_forwards_each_port_on_a_fixed_pci_slot():
    args = qemu_args(parse(spec()))
    assert args[0] == "-netdev" and args[2] == "-device"
    assert args[1] == "user,id=ttnet0,hostfwd=tcp:127.0.0.1:20022-:22,hostfwd=tcp:127.0.0.1:20080-:80"
    device = dict(part.split("=", 1) for part in args[3].split(",")[1:])
    assert args[3].startswith("virtio-net-pci,") and device["netdev"] == "ttnet0"
    assert device["bus"] == "pci.0" and device["addr"] == "0x1e"
    assert device["mac"].startswith("52:54:00:")
    everywhere = qemu_args(parse(spec(publish_addr="0.0.0.0")))[1]
    assert everywhere == "user,id=ttnet0,hostfwd=tcp::20022-:22,hostfwd=tcp::20080-:80"


def test_deny_outgoing_restricts_the_user_network():
    assert "restrict=on" in qemu_args(parse(spec(deny_outgoing=True)))[1].split(",")
    assert "restrict=on" not in qemu_args(parse(spec()))[1].split(",")


def test_serial_console_is_logged_to_the_work_dir():
    serial = parse(spec()).find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").get("file") == str(CONSOLE) and serial.find("log").get("append") == "on"


def test_values_are_escaped_not_spliced():
    odd = Path("/srv/a&b/'q'/<disk>.qcow2")
    root = parse(spec(disk_path=odd, hostname='x"y<z>'))
    assert disks(root)["vda"].find("source").get("file") == str(odd)
    assert root.findtext("title") == 'x"y<z>'


def test_refuses_what_libvirt_could_not_run():
    with pytest.raises(EngineError, match="disk"):
        domain_xml(spec(disk_path=None), domain_type="qemu", console_log=CONSOLE)
    with pytest.raises(EngineError, match="IPv4 only"):
        domain_xml(spec(publish_addr="::1"), domain_type="qemu", console_log=CONSOLE)
    with pytest.raises(EngineError, match="not an IP address"):
        domain_xml(spec(publish_addr="localhost"), domain_type="qemu", console_log=CONSOLE)

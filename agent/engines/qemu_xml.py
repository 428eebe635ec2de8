"""The libvirt domain XML of one qemu VM, built with ElementTree from a `GuestSpec`: pure, no libvirt.

- Metadata in our namespace carries the vm id and host id, so an agent lists and touches only its domains.
- Disk: the VM's disk as virtio ``vda``; the NoCloud seed as a read-only raw virtio ``vdb``; direct kernel boot
  when the image has a kernel, else the disk's own loader.
- Networking is QEMU user-mode (slirp) through ``<qemu:commandline>``: ``-netdev user`` with one ``hostfwd``
  per published port, ``restrict=on`` when outgoing traffic is denied (the guest then reaches nothing, but
  its forwarded ports answer), and a ``virtio-net-pci`` device at a fixed PCI slot far from libvirt's own.
- On an environment network (``spec.network``), a second NIC: a libvirt tap on the env's bridge
  (agent/net/qemu_net.py) in the last slot, so the user-mode NIC stays the guest's first (eth0).
- Serial console on a pty, logged (appended) to a file in the VM's work dir.
"""

from __future__ import annotations

import hashlib
import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

from agent.engines.base import EngineError, GuestSpec, Image
from agent.net import names

METADATA_NS = "https://ttstack.dev/xmlns/agent-vm/1"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("ttstack", METADATA_NS)  # the prefixes libvirt shows; any prefix would parse the same
ET.register_namespace("qemu", QEMU_NS)
NETDEV_ID = "ttnet0"
# PCI slot of the user-mode NIC on pc (i440fx) machines: libvirt hands out slots from the bottom up.
NIC_PCI_SLOT = 0x1E
ENV_NIC_PCI_SLOT = 0x1F


def _meta(tag: str) -> str:
    return f"{{{METADATA_NS}}}{tag}"


def mac_for(vm_id: str) -> str:
    """A stable locally administered MAC per VM (QEMU's 52:54:00 prefix)."""
    digest = hashlib.sha256(vm_id.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def env_mac_for(vm_id: str) -> str:
    """The MAC of the NIC on the environment network (52:54:01: so it never equals the user-mode NIC's)."""
    return "52:54:01:" + mac_for(vm_id)[9:]


def _env_interface(devices: ET.Element, spec: GuestSpec) -> None:
    interface = _sub(devices, "interface", type="bridge")
    _sub(interface, "source", bridge=names.bridge(spec.host_id, "qemu", spec.network))
    _sub(interface, "mac", address=env_mac_for(spec.vm_id))
    _sub(interface, "model", type="virtio")
    _sub(interface, "rom", enabled="no")
    _sub(interface, "address", type="pci", domain="0x0000", bus="0x00", slot=f"{ENV_NIC_PCI_SLOT:#04x}",
         function="0x0")


def _hostfwd_addr(addr: str) -> str:
    """slirp's hostfwd takes an IPv4 address (empty = every interface)."""
    if addr in ("", "0.0.0.0", "*"):
        return ""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError as exc:
        raise EngineError(f"publish address {addr!r} is not an IP address") from exc
    if ip.version != 4:
        raise EngineError(f"qemu user networking publishes on IPv4 only, not {addr}")
    return str(ip)


def netdev_arg(spec: GuestSpec, netdev_id: str = NETDEV_ID) -> str:
    parts = [f"user,id={netdev_id}"]
    if spec.deny_outgoing:
        parts.append("restrict=on")
    addr = _hostfwd_addr(spec.publish_addr)
    for guest_port, host_port in sorted(spec.port_map.items()):
        parts.append(f"hostfwd=tcp:{addr}:{int(host_port)}-:{int(guest_port)}")
    return ",".join(parts)


def nic_arg(spec: GuestSpec) -> str:
    return f"virtio-net-pci,netdev={NETDEV_ID},mac={mac_for(spec.vm_id)},bus=pci.0,addr={NIC_PCI_SLOT:#x},romfile="


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _os(image: Image, machine: str) -> ET.Element:
    element = ET.Element("os")
    _sub(element, "type", "hvm", arch="x86_64", machine=machine)
    if image.kernel:
        _sub(element, "kernel", str(image.kernel))
        if image.initrd:
            _sub(element, "initrd", str(image.initrd))
        _sub(element, "cmdline", image.cmdline or "console=ttyS0")
    else:
        _sub(element, "boot", dev="hd")
    return element


def _disk(devices: ET.Element, path: Path, target: str, fmt: str, readonly: bool = False) -> None:
    block = str(path).startswith("/dev/")  # a zvol or another block device
    disk = _sub(devices, "disk", type="block" if block else "file", device="disk")
    driver = {"name": "qemu", "type": fmt}
    if not readonly:
        driver["discard"] = "unmap"
    _sub(disk, "driver", **driver)
    _sub(disk, "source", **{"dev" if block else "file": str(path)})
    _sub(disk, "target", dev=target, bus="virtio")
    if readonly:
        _sub(disk, "readonly")


def disk_format(path: Path) -> str:
    """raw for block devices and .raw files, else qcow2 (the file storage's overlays)."""
    return "raw" if str(path).startswith("/dev/") or Path(path).suffix == ".raw" else "qcow2"


def domain_xml(spec: GuestSpec, *, domain_type: str, console_log: Path, machine: str = "pc") -> str:
    """domain_type: "kvm" or "qemu" (TCG)."""
    if spec.disk_path is None:
        raise EngineError("the qemu engine needs the VM's disk (spec.disk_path)")
    domain = ET.Element("domain", type=domain_type)
    _sub(domain, "name", spec.name)
    _sub(domain, "title", spec.hostname or spec.vm_id)
    owner = _sub(_sub(domain, "metadata"), _meta("vm"))
    _sub(owner, _meta("id"), spec.vm_id)
    _sub(owner, _meta("host"), spec.host_id)
    if spec.controller:
        _sub(owner, _meta("controller"), spec.controller)
    _sub(domain, "memory", str(int(spec.mem)), unit="MiB")
    _sub(domain, "vcpu", str(int(spec.cpu)))
    domain.append(_os(spec.image, machine))
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if domain_type == "kvm":
        _sub(domain, "cpu", mode="host-passthrough")
    else:  # TCG's "max" model: everything TCG emulates, so images built for x86-64-v2 and later boot too
        _sub(domain, "cpu", mode="maximum", check="none")
    _sub(domain, "clock", offset="utc")
    for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        _sub(domain, event, action)
    devices = _sub(domain, "devices")
    _disk(devices, spec.disk_path, "vda", disk_format(spec.disk_path))
    if spec.seed_path:
        _disk(devices, spec.seed_path, "vdb", "raw", readonly=True)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(console_log), append="on")
    _sub(serial, "target", port="0")
    _sub(_sub(devices, "console", type="pty"), "target", type="serial", port="0")
    _sub(_sub(devices, "rng", model="virtio"), "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="none")
    if spec.network:
        _env_interface(devices, spec)
    commandline = _sub(domain, f"{{{QEMU_NS}}}commandline")
    for arg in ("-netdev", netdev_arg(spec), "-device", nic_arg(spec)):
        _sub(commandline, f"{{{QEMU_NS}}}arg", value=arg)
    return ET.tostring(domain, encoding="unicode")


def owner_of(metadata_xml: str) -> tuple[str, str] | None:
    """(vm_id, host_id) from the metadata element libvirt returns, None when it is not ours."""
    try:
        root = ET.fromstring(metadata_xml)
    except ET.ParseError:
        return None
    vm_id = root.findtext(_meta("id")) or root.findtext("id") or ""
    host_id = root.findtext(_meta("host")) or root.findtext("host") or ""
    return (vm_id, host_id) if vm_id else None

"""The qemu engine: one libvirt domain per VM.

- Name ``<prefix><vm_id>`` (the caller's ``spec.name``); a ``<metadata>`` element in our namespace carries the
  vm id and host id, so an agent lists and touches only its own domains.
- Domain type ``kvm`` only when a short functional probe proves KVM boots a kernel here (``/dev/kvm`` can
  exist and still hang guests); otherwise ``qemu`` (TCG).
- Networking is QEMU user-mode (slirp) through ``<qemu:commandline>``: ``-netdev user`` with one ``hostfwd``
  per published port, ``restrict=on`` when outgoing traffic is denied (the guest then reaches nothing but
  its forwarded ports answer), and a ``virtio-net-pci`` device at a fixed PCI slot far from libvirt's own.
- Disk: the VM's overlay as virtio ``vda``; the NoCloud seed as a read-only raw virtio ``vdb``; direct kernel
  boot when the image has a kernel. Serial console on a pty, logged to ``<workdir>/console.log``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import pwd
import re
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from agent.engines import probes
from agent.engines.base import MISSING, RUNNING, STOPPED, Engine, EngineError, EngineUnavailable, GuestSpec

log = logging.getLogger(__name__)

METADATA_NS = "https://ttstack.dev/xmlns/agent-vm/1"
METADATA_PREFIX = "ttstack"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
QEMU_BINARY = "qemu-system-x86_64"
# PCI slot of the user-mode NIC on pc (i440fx) machines: libvirt hands out slots from the bottom up.
NIC_PCI_SLOT = 0x1E
KVM_PROBE_TIMEOUT = 5.0  # a working KVM reaches the kernel's no-root panic in about a second
CONSOLE_LOG = "console.log"

_kvm_lock = threading.Lock()
_kvm_result: bool | None = None


def _probe_kernels(extra: Path | None) -> list[Path]:
    kernels = [extra] if extra else []
    try:
        from agent.imagebuild.tiny import cache_dir

        kernels += sorted(cache_dir().glob("linux-image-*/boot/vmlinuz-*"))
    except Exception:  # the cache is only a convenience
        pass
    return [k for k in kernels if k and k.is_file()]


def boot_kernel(accel: str, kernel: Path, timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """Does `kernel` get through its init (to the "no root fs" panic) under qemu's `accel` within timeout?"""
    args = [QEMU_BINARY, "-accel", accel, "-m", "128", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    try:
        out = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL).stdout
    except subprocess.TimeoutExpired:
        return False
    except OSError as exc:
        log.warning("cannot run %s: %s", QEMU_BINARY, exc)
        return False
    return b"Kernel panic" in out or b"Run /init" in out


def kvm_works(kernel: Path | None = None, timeout: float = KVM_PROBE_TIMEOUT) -> bool | None:
    """Does a KVM guest boot a Linux kernel to its "no root fs" panic here? None if no kernel to try.

    The first definitive answer is cached for the life of the process.
    """
    global _kvm_result
    with _kvm_lock:
        if _kvm_result is not None:
            return _kvm_result
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            _kvm_result = False
            return False
        kernels = _probe_kernels(kernel)
        if not kernels:
            return None
        ok = boot_kernel("kvm", kernels[0], timeout)
        log.info("kvm probe with %s: %s", kernels[0].name, "works" if ok else "does not work, using TCG")
        _kvm_result = ok
        return ok


def _mac(vm_id: str) -> str:
    digest = hashlib.sha256(vm_id.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


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


def netdev_arg(spec: GuestSpec, netdev_id: str = "ttnet0") -> str:
    parts = [f"user,id={netdev_id}"]
    if spec.deny_outgoing:
        parts.append("restrict=on")
    addr = _hostfwd_addr(spec.publish_addr)
    for guest_port, host_port in sorted(spec.port_map.items()):
        parts.append(f"hostfwd=tcp:{addr}:{int(host_port)}-:{int(guest_port)}")
    return ",".join(parts)


class QemuEngine(Engine):
    name = "qemu"

    @classmethod
    def from_settings(cls) -> QemuEngine:
        from agent import conf

        return cls(uri=conf.libvirt_uri(), host_id=conf.host_id(), accel=conf.qemu_accel())

    def __init__(self, uri: str = "qemu:///system", host_id: str = "", accel: str = "auto",
                 machine: str = "pc"):
        """uri: libvirt connection. host_id: only domains whose metadata carries it are listed (empty: any
        ttstack domain). accel: "auto" (probe KVM), "kvm" or "tcg"."""
        if accel not in ("auto", "kvm", "tcg"):
            raise ValueError("accel must be auto, kvm or tcg")
        self.uri = uri
        self.host_id = host_id
        self.accel = accel
        self.machine = machine
        self._conn = None
        self._conn_lock = threading.Lock()
        self._dac: tuple | None = None

    # ------------------------------------------------------------------------------------------ libvirt

    def _libvirt(self):
        try:
            import libvirt
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise EngineUnavailable("libvirt-python is not installed") from exc
        return libvirt

    def conn(self):
        libvirt = self._libvirt()
        with self._conn_lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                self._conn = None
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise EngineUnavailable(f"cannot connect to libvirt at {self.uri}: {exc}") from exc
            return self._conn

    def close(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # closing a dead connection
                    pass
                self._conn = None

    def _lookup(self, name: str):
        """The domain called name, or None."""
        libvirt = self._libvirt()
        try:
            return self.conn().lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise EngineError(f"libvirt: {exc}") from exc

    def _owner(self, dom) -> tuple[str, str] | None:
        """(vm_id, host_id) from our metadata, or None when the domain is not ttstack's."""
        libvirt = self._libvirt()
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        except libvirt.libvirtError:
            return None
        try:
            root = ET.fromstring(xml)
        except ET.ParseError:
            return None
        vm_id = root.findtext(f"{{{METADATA_NS}}}id") or root.findtext("id") or ""
        host_id = root.findtext(f"{{{METADATA_NS}}}host") or root.findtext("host") or ""
        return (vm_id, host_id) if vm_id else None

    def _ours(self, dom, vm_id: str | None = None) -> bool:
        owner = self._owner(dom)
        if owner is None:
            return False
        if self.host_id and owner[1] != self.host_id:
            return False
        return vm_id is None or owner[0] == vm_id

    def _own_domain(self, spec: GuestSpec):
        """Our domain for spec, None if missing; EngineError if the name belongs to someone else."""
        dom = self._lookup(spec.name)
        if dom is not None and not self._ours(dom, spec.vm_id):
            raise EngineError(f"a libvirt domain named {spec.name} exists but is not this agent's VM {spec.vm_id}")
        return dom

    def _dac_identity(self) -> tuple[int, set[int]] | None:
        """(uid, gids) qemu runs as under this connection's DAC security driver, None if root/unknown."""
        if self._dac is None:
            self._dac = (self._read_dac_identity(),)
        return self._dac[0]

    def _read_dac_identity(self) -> tuple[int, set[int]] | None:
        try:
            caps = ET.fromstring(self.conn().getCapabilities())
        except Exception:
            return None
        for model in caps.iter("secmodel"):
            if model.findtext("model") != "dac":
                continue
            for base in model.findall("baselabel"):
                m = re.match(r"\+?(\d+):\+?(\d+)", base.text or "")
                if m:
                    uid, gid = int(m.group(1)), int(m.group(2))
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

    def _check_reachable(self, paths: list[Path]) -> None:
        """Fail early, with the reason, when qemu's user cannot walk to one of the guest's files."""
        ident = self._dac_identity()
        if ident is None or "qemu:///session" in self.uri:
            return
        uid, gids = ident
        for path in paths:
            for parent in list(Path(path).resolve().parents)[::-1]:
                st = parent.stat()
                mode = st.st_mode
                if st.st_uid == uid:
                    ok = bool(mode & stat.S_IXUSR)
                elif st.st_gid in gids:
                    ok = bool(mode & stat.S_IXGRP)
                else:
                    ok = bool(mode & stat.S_IXOTH)
                if not ok:
                    try:
                        user = pwd.getpwuid(uid).pw_name
                    except KeyError:
                        user = str(uid)
                    raise EngineError(
                        f"qemu runs as {user} and cannot reach {path}: directory {parent} is not searchable "
                        f"(mode {stat.S_IMODE(mode):o}); keep VM files under a directory others may traverse"
                    )

    # ---------------------------------------------------------------------------------------------- XML

    def domain_type(self, spec: GuestSpec) -> str:
        if self.accel == "tcg":
            return "qemu"
        if self.accel == "kvm":
            return "kvm"
        # The shared boot-sector probe first (cached for the process, also used by firecracker); when it
        # passes, also a 64-bit kernel must get through its init: here BIOS code runs under KVM but Linux hangs.
        ok, why = probes.kvm_works()
        if not ok:
            log.debug("KVM not used: %s", why)
            return "qemu"
        return "qemu" if kvm_works(spec.image.kernel) is False else "kvm"

    def console_log(self, spec: GuestSpec) -> Path:
        return self._workdir(spec) / CONSOLE_LOG

    def _workdir(self, spec: GuestSpec) -> Path:
        if spec.workdir:
            return Path(spec.workdir)
        if spec.disk_path:
            return Path(spec.disk_path).parent
        raise EngineError("the qemu engine needs a workdir or a disk path for the console log")

    def domain_xml(self, spec: GuestSpec, domain_type: str | None = None) -> str:
        if spec.disk_path is None:
            raise EngineError("the qemu engine needs the VM's disk (spec.disk_path)")
        image = spec.image
        dtype = domain_type or self.domain_type(spec)
        fmt = "raw" if str(spec.disk_path).startswith("/dev/") else "qcow2"
        if Path(spec.disk_path).suffix == ".raw":
            fmt = "raw"

        os_parts = [f"<type arch='x86_64' machine={quoteattr(self.machine)}>hvm</type>"]
        if image.kernel:
            os_parts.append(f"<kernel>{escape(str(image.kernel))}</kernel>")
            if image.initrd:
                os_parts.append(f"<initrd>{escape(str(image.initrd))}</initrd>")
            os_parts.append(f"<cmdline>{escape(image.cmdline or 'console=ttyS0')}</cmdline>")
        else:
            os_parts.append("<boot dev='hd'/>")

        disk_type = "block" if fmt == "raw" and str(spec.disk_path).startswith("/dev/") else "file"
        source_attr = "dev" if disk_type == "block" else "file"
        devices = [
            f"<disk type='{disk_type}' device='disk'><driver name='qemu' type='{fmt}' discard='unmap'/>"
            f"<source {source_attr}={quoteattr(str(spec.disk_path))}/><target dev='vda' bus='virtio'/></disk>",
        ]
        if spec.seed_path:
            devices.append(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                f"<source file={quoteattr(str(spec.seed_path))}/><target dev='vdb' bus='virtio'/><readonly/></disk>"
            )
        console = self.console_log(spec)
        devices += [
            f"<serial type='pty'><log file={quoteattr(str(console))} append='on'/><target port='0'/></serial>",
            "<console type='pty'><target type='serial' port='0'/></console>",
            "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
            "<memballoon model='none'/>",
        ]
        # TCG's "max" model: everything TCG emulates, so images built for x86-64-v2 and later boot too.
        cpu = "<cpu mode='host-passthrough'/>" if dtype == "kvm" else "<cpu mode='maximum' check='none'/>"
        nic = (f"virtio-net-pci,netdev=ttnet0,mac={_mac(spec.vm_id)},bus=pci.0,addr={NIC_PCI_SLOT:#x},romfile=")
        qemu_args = ["-netdev", netdev_arg(spec), "-device", nic]
        meta = (f"<{METADATA_PREFIX}:vm xmlns:{METADATA_PREFIX}={quoteattr(METADATA_NS)}>"
                f"<{METADATA_PREFIX}:id>{escape(spec.vm_id)}</{METADATA_PREFIX}:id>"
                f"<{METADATA_PREFIX}:host>{escape(spec.host_id)}</{METADATA_PREFIX}:host>"
                f"</{METADATA_PREFIX}:vm>")
        return "\n".join([
            f"<domain type='{dtype}' xmlns:qemu={quoteattr(QEMU_NS)}>",
            f"  <name>{escape(spec.name)}</name>",
            f"  <title>{escape(spec.hostname or spec.vm_id)}</title>",
            f"  <metadata>{meta}</metadata>",
            f"  <memory unit='MiB'>{int(spec.mem)}</memory>",
            f"  <vcpu>{int(spec.cpu)}</vcpu>",
            "  <os>" + "".join(os_parts) + "</os>",
            "  <features><acpi/><apic/></features>",
            f"  {cpu}",
            "  <clock offset='utc'/>",
            "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>",
            "  <devices>" + "".join(devices) + "</devices>",
            "  <qemu:commandline>" + "".join(f"<qemu:arg value={quoteattr(a)}/>" for a in qemu_args)
            + "</qemu:commandline>",
            "</domain>",
        ])

    # ---------------------------------------------------------------------------------------- interface

    def probe(self) -> tuple[bool, str]:
        libvirt = self._libvirt()
        try:
            conn = self.conn()
            caps = ET.fromstring(conn.getCapabilities())
        except (EngineError, libvirt.libvirtError) as exc:
            return False, str(exc)
        self._warn_kvm_permissions()
        for guest in caps.iter("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") == "x86_64":
                return True, ""
        return False, f"libvirt at {self.uri} offers no x86_64 guests (is qemu-system-x86 installed?)"

    def _warn_kvm_permissions(self) -> None:
        """libvirt re-probes qemu (seconds, serialised) on every call when /dev/kvm is usable by root only:
        its capabilities cache says "kvm" while the qemu user cannot open the device, so the cache never
        validates. udev normally makes /dev/kvm root:kvm 0660; containers without udev do not."""
        ident = self._dac_identity()
        if ident is None or not os.path.exists("/dev/kvm"):
            return
        uid, gids = ident
        st = os.stat("/dev/kvm")
        if st.st_uid == uid:
            ok = st.st_mode & 0o600 == 0o600
        elif st.st_gid in gids:
            ok = st.st_mode & 0o060 == 0o060
        else:
            ok = st.st_mode & 0o006 == 0o006
        if not ok:
            log.warning("/dev/kvm (mode %o, gid %d) is not usable by qemu's user: every libvirt call will "
                        "re-probe qemu and take seconds; run `chgrp kvm /dev/kvm && chmod 0660 /dev/kvm` "
                        "(what udev does on a normal Debian host)", stat.S_IMODE(st.st_mode), st.st_gid)

    def _define(self, spec: GuestSpec):
        libvirt = self._libvirt()
        paths = [p for p in (spec.disk_path, spec.seed_path, spec.image.kernel, spec.image.initrd) if p]
        backing = [spec.image.disk] if spec.image.disk and Path(spec.image.disk).exists() else []
        for path in paths:
            if not str(path).startswith("/dev/") and not Path(path).exists():
                raise EngineError(f"missing file for {spec.name}: {path}")
        self._check_reachable(paths + backing)
        workdir = self._workdir(spec)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            return self.conn().defineXML(self.domain_xml(spec))
        except libvirt.libvirtError as exc:
            raise EngineError(f"libvirt refused the domain for {spec.name}: {exc}") from exc

    def _start(self, dom, spec: GuestSpec) -> None:
        libvirt = self._libvirt()
        try:
            if not dom.isActive():
                dom.create()
        except libvirt.libvirtError as exc:
            raise EngineError(f"{spec.name} did not start: {exc}") from exc

    def create(self, spec: GuestSpec) -> None:
        """Define and start. Safe to repeat: an existing domain of the same VM is redefined and started."""
        self._own_domain(spec)
        dom = self._define(spec)
        self._start(dom, spec)

    def start(self, spec: GuestSpec) -> None:
        dom = self._own_domain(spec)
        if dom is None:  # lost (e.g. libvirt's config was wiped): the spec has all it takes to define it again
            dom = self._define(spec)
        self._start(dom, spec)

    def stop(self, spec: GuestSpec, timeout: float = 30) -> None:
        libvirt = self._libvirt()
        dom = self._own_domain(spec)
        if dom is None:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        next_button = 0.0
        try:
            while dom.isActive():
                now = time.monotonic()
                if now >= deadline:
                    log.info("%s ignored ACPI shutdown for %.0f s; destroying", spec.name, timeout)
                    dom.destroy()
                    break
                if now >= next_button:  # a press before the guest listens is lost: press again now and then
                    try:
                        dom.shutdown()
                    except libvirt.libvirtError:
                        if not dom.isActive():
                            break
                    next_button = now + 5
                time.sleep(0.25)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                return
            raise EngineError(f"stopping {spec.name} failed: {exc}") from exc

    def destroy(self, spec: GuestSpec) -> None:
        libvirt = self._libvirt()
        dom = self._own_domain(spec)
        if dom is None:
            return
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                raise EngineError(f"destroying {spec.name} failed: {exc}") from exc
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise EngineError(f"undefining {spec.name} failed: {exc}") from exc

    def _state_of(self, dom) -> str:
        libvirt = self._libvirt()
        try:
            state, _reason = dom.state()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return MISSING
            raise EngineError(f"libvirt: {exc}") from exc
        if state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE,
                     libvirt.VIR_DOMAIN_PMSUSPENDED):
            return STOPPED
        return RUNNING  # running, blocked, paused, shutting down: the guest still holds its resources

    def state(self, spec: GuestSpec) -> str:
        dom = self._own_domain(spec)
        return MISSING if dom is None else self._state_of(dom)

    def list_guests(self) -> dict[str, str]:
        libvirt = self._libvirt()
        try:
            domains = self.conn().listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise EngineError(f"libvirt: {exc}") from exc
        guests = {}
        for dom in domains:
            owner = self._owner(dom)
            if owner is None or (self.host_id and owner[1] != self.host_id):
                continue
            state = self._state_of(dom)
            if state != MISSING:
                guests[owner[0]] = state
        return guests

"""The qemu engine: one libvirt domain per VM, named ``spec.name``; its XML is agent/engines/qemu_xml.py.

Domain type ``kvm`` only when the functional probe (agent/engines/probes.py) proves KVM boots here --
``/dev/kvm`` can exist and still hang guests -- otherwise ``qemu`` (TCG). Before a domain is defined, the
files it uses are checked to be reachable by qemu's user (agent/engines/qemu_access.py).
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from agent import procutil
from agent.engines import probes, qemu_access, qemu_xml
from agent.engines.base import (
    CONSOLE_LOG,
    MISSING,
    RUNNING,
    STOPPED,
    Engine,
    EngineError,
    EngineUnavailable,
    GuestSpec,
    tail_lines,
)

# Re-exported: tests/agent/test_tiny_guest.py imports them from here.
from agent.engines.probes import boot_kernel, kvm_works  # noqa: F401
from agent.engines.qemu_xml import netdev_arg  # noqa: F401

log = logging.getLogger(__name__)
BUTTON_EVERY = 5.0  # seconds between ACPI power-button presses while a stop waits


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
            return qemu_xml.owner_of(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, qemu_xml.METADATA_NS))
        except libvirt.libvirtError:
            return None

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

    def _dac_identity(self) -> qemu_access.Identity | None:
        """Who qemu runs as under this connection (None: root or unknown); read once."""
        if self._dac is None:
            try:
                caps = self.conn().getCapabilities()
            except Exception:  # an unreadable identity only skips the early checks
                caps = ""
            self._dac = (qemu_access.dac_identity(caps) if caps else None,)
        return self._dac[0]

    def dac_identity(self) -> qemu_access.Identity | None:
        """(uid, gids) qemu runs as, None when root or unknown (the agent's start-up uses it)."""
        return self._dac_identity()

    # ---------------------------------------------------------------------------------------------- XML

    def domain_type(self, spec: GuestSpec) -> str:
        if self.accel == "tcg":
            return "qemu"
        if self.accel == "kvm":
            return "kvm"
        ok, why = probes.kvm_works(spec.image.kernel)
        if not ok:
            log.debug("KVM not used: %s", why)
        return "kvm" if ok else "qemu"

    def console_log(self, spec: GuestSpec) -> Path:
        return self._workdir(spec) / CONSOLE_LOG

    def console_tail(self, spec: GuestSpec, lines: int) -> tuple[str, str]:
        return CONSOLE_LOG, tail_lines(self.console_log(spec), lines)

    def _workdir(self, spec: GuestSpec) -> Path:
        if spec.workdir:
            return Path(spec.workdir)
        if spec.disk_path:
            return Path(spec.disk_path).parent
        raise EngineError("the qemu engine needs a workdir or a disk path for the console log")

    def domain_xml(self, spec: GuestSpec, domain_type: str | None = None) -> str:
        return qemu_xml.domain_xml(spec, domain_type=domain_type or self.domain_type(spec),
                                   console_log=self.console_log(spec), machine=self.machine)

    # ---------------------------------------------------------------------------------------- interface

    def probe(self) -> tuple[bool, str]:
        libvirt = self._libvirt()
        try:
            conn = self.conn()
            caps = ET.fromstring(conn.getCapabilities())
        except (EngineError, libvirt.libvirtError) as exc:
            return False, str(exc)
        ident = self._dac_identity()
        if ident is not None:
            qemu_access.warn_if_kvm_unusable(ident)
        for guest in caps.iter("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") == "x86_64":
                return True, ""
        return False, f"libvirt at {self.uri} offers no x86_64 guests (is qemu-system-x86 installed?)"

    def _define(self, spec: GuestSpec):
        libvirt = self._libvirt()
        paths = [p for p in (spec.disk_path, spec.seed_path, spec.image.kernel, spec.image.initrd) if p]
        backing = [spec.image.disk] if spec.image.disk and Path(spec.image.disk).exists() else []
        for path in paths:
            if not str(path).startswith("/dev/") and not Path(path).exists():
                raise EngineError(f"missing file for {spec.name}: {path}")
        ident = self._dac_identity()
        if ident is not None and "qemu:///session" not in self.uri:
            qemu_access.check_reachable(paths + backing, ident)
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
        """ACPI power button, pressed again every BUTTON_EVERY seconds (a press before the guest listens is
        lost); the domain is destroyed when it is still running after `timeout`."""
        libvirt = self._libvirt()
        dom = self._own_domain(spec)
        if dom is None:
            return
        last_press = [float("-inf")]

        def powered_off() -> bool:
            if not dom.isActive():
                return True
            if time.monotonic() - last_press[0] >= BUTTON_EVERY:
                last_press[0] = time.monotonic()
                try:
                    dom.shutdown()
                except libvirt.libvirtError:
                    return not dom.isActive()
            return False

        try:
            if not procutil.wait_until(powered_off, max(0.0, timeout), interval=0.25):
                log.info("%s ignored ACPI shutdown for %.0f s; destroying", spec.name, timeout)
                dom.destroy()
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

    def ip(self, spec: GuestSpec) -> str | None:
        """The address the agent gave the guest on its environment network (user-mode NICs have none)."""
        return spec.private_ip or None

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

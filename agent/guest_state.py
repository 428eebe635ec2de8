"""Records follow their guests: what an engine reports becomes the VM's state (and address)."""

from __future__ import annotations

import logging

from agent import engines as registry
from agent.engines.base import MISSING, RUNNING, STOPPED, Engine, EngineError, GuestSpec
from agent.models import Vm, VmState
from agent.specs import spec_without_image

log = logging.getLogger(__name__)

GUEST_DISAPPEARED = "guest disappeared"


def guest_ip(engine: Engine, spec: GuestSpec) -> str:
    try:
        return engine.ip(spec) or ""
    except Exception as exc:  # an address is nice to have, never a reason to fail
        log.debug("ip of %s: %s", spec.vm_id, exc)
        return ""


def apply_state(vm: Vm, state: str, engine: Engine | None = None, spec: GuestSpec | None = None) -> Vm:
    """Record what the engine reports for a VM that should have a guest (with engine and spec, its
    address too)."""
    before = (vm.state, vm.ip, vm.error)
    if state == RUNNING:
        vm.state = VmState.RUNNING
        if engine is not None and spec is not None:
            vm.ip = guest_ip(engine, spec) or vm.ip
    elif state == STOPPED:
        vm.state = VmState.STOPPED
    elif state == MISSING:
        vm.state, vm.error = VmState.FAILED, GUEST_DISAPPEARED
    if vm.error == GUEST_DISAPPEARED and state in (RUNNING, STOPPED):
        vm.error = ""
    if (vm.state, vm.ip, vm.error) != before:
        vm.save(update_fields=["state", "ip", "error", "updated_at"])
    return vm


def _follows_its_guest(vm: Vm) -> bool:
    """Running and stopped VMs have a guest to ask; so has one whose guest vanished (it may be back)."""
    return vm.state in (VmState.RUNNING, VmState.STOPPED) or vm.error == GUEST_DISAPPEARED


def refresh(vm: Vm) -> Vm:
    """Bring one record's state up to date with its engine (when the engine answers)."""
    if not _follows_its_guest(vm):
        return vm
    try:
        engine = registry.available(vm.engine)
        spec = spec_without_image(vm, engine)
        return apply_state(vm, engine.state(spec), engine, spec)
    except EngineError as exc:
        log.info("refresh %s: %s", vm.id, exc)
        return vm


def refresh_all(vms: list[Vm]) -> list[Vm]:
    """One list_guests() per engine instead of one call per VM."""
    by_engine: dict[str, dict[str, str] | None] = {}
    for vm in vms:
        if not _follows_its_guest(vm):
            continue
        if vm.engine not in by_engine:
            try:
                by_engine[vm.engine] = registry.available(vm.engine).list_guests()
            except EngineError as exc:
                log.info("refresh %s guests: %s", vm.engine, exc)
                by_engine[vm.engine] = None
        guests = by_engine[vm.engine]
        if guests is not None:
            apply_state(vm, guests.get(vm.id, MISSING))
    return vms

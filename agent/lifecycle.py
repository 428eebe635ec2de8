"""What the agent does with one VM: create, stop, start, delete, and the teardown they share.

Order of a create (TTstack's lesson: a crash leaves something to clean up, never a leak):
  1. check everything that can be checked without side effects (engine, image, capacity, ports)
  2. write the Vm record (state creating) and its PortAllocation rows in one transaction
  3. work dir DATA_DIR/vms/<id>, disk and NoCloud seed (VM engines), engine.create
  4. success -> running; any failure -> guest, disk, seed and ports removed, record failed + error
Refused requests raise domain errors (ttproject.errors) and leave nothing behind.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from agent import conf, ports, ssh_ready
from agent import engines as registry
from agent import net as networks
from agent import storage as storages
from agent.cloudinit import build_seed
from agent.engines.base import SSH_PORT, Engine, EngineError, GuestSpec, Image
from agent.guest_state import apply_state, guest_ip
from agent.image_lookup import resolve_image
from agent.models import Vm, VmState
from agent.resources import check_capacity
from agent.specs import spec_for, spec_without_image
from agent.storage.base import StorageError
from ttproject import errors
from ttproject.vocabulary import MAX_PORTS_PER_VM, VM_ENGINES

log = logging.getLogger(__name__)

SEED_NAME = "seed.iso"
PORT_ATTEMPTS = 3  # creates of a guest whose host port another process took first
# Parameters that make two creates of the same id "the same request".
IDENTITY_FIELDS = ("image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing", "hostname", "ssh_keys",
                   "controller", "network")

# One VM operation at a time per id (views may run in several threads under some servers).
_vm_locks: dict[str, threading.Lock] = {}
_vm_locks_guard = threading.Lock()


def _vm_lock(vm_id: str) -> threading.Lock:
    with _vm_locks_guard:
        return _vm_locks.setdefault(vm_id, threading.Lock())


@dataclass
class CreateRequest:
    image: str
    engine: str = "qemu"
    cpu: int = 2
    mem: int = 1024
    disk: int = 40960
    ports: list[int] | None = None
    deny_outgoing: bool = False
    ssh_keys: list[str] | None = None
    hostname: str = ""
    id: str = ""
    controller: str = ""  # the id of the controller asking (its orphan collection looks for it)
    network: str = ""  # the environment network (docs/networks.md); "" for none


@dataclass
class CreateResult:
    """What a create did: `created` is False for a repeated request; `failure` says why the guest did not
    come up (the record is kept, state failed)."""

    vm: Vm
    created: bool
    failure: str = ""


# --------------------------------------------------------------------------------------------- create


def _existing(vm_id: str, params: dict) -> Vm | None:
    """The VM of an earlier create with these parameters; Conflict when the parameters differ."""
    vm = Vm.objects.filter(pk=vm_id).first()
    if vm is None:
        return None
    diff = ", ".join(f"{f}: {getattr(vm, f)!r} != {params[f]!r}" for f in IDENTITY_FIELDS
                     if getattr(vm, f) != params[f])
    if diff:
        raise errors.Conflict(f"VM {vm_id} already exists with different parameters ({diff})")
    return vm


def _check_port_count(guest_ports) -> None:
    if len(guest_ports) > MAX_PORTS_PER_VM:
        message = f"at most {MAX_PORTS_PER_VM} ports per VM ({len(guest_ports)} with 22)"
        raise errors.Invalid(f"ports: {message}", errors={"ports": [message]})


def create_vm(req: CreateRequest) -> CreateResult:
    vm_id = req.id or f"vm-{uuid.uuid4().hex[:12]}"
    _check_port_count(set(req.ports or []) | ({22} if req.engine in VM_ENGINES else set()))
    with _vm_lock(vm_id):
        # The engine and image first: the image may add ports (an sshd image publishes 22 on docker too).
        engine = registry.available(req.engine)
        image = resolve_image(req.image, engine)
        implied = engine.implied_ports(image)
        guest_ports = sorted(set(req.ports or []) | implied)
        _check_port_count(guest_ports)
        params = {"image": req.image, "engine": req.engine, "cpu": req.cpu, "mem": req.mem, "disk": req.disk,
                  "ports": guest_ports, "deny_outgoing": req.deny_outgoing, "hostname": req.hostname or vm_id,
                  "ssh_keys": list(req.ssh_keys or []), "controller": req.controller,
                  "network": req.network}
        existing = _existing(vm_id, params)
        if existing is not None:
            return CreateResult(existing, created=False)
        networks.check_engine(req.network, req.engine)
        check_capacity(req.cpu, req.mem, req.disk)
        addr = conf.publish_addr()
        try:
            with transaction.atomic():
                vm = Vm.objects.create(id=vm_id, **params, state=VmState.CREATING, publish_addr=addr,
                                       ssh_ready=None if SSH_PORT in set(guest_ports) - implied else False,
                                       guest_name=conf.guest_name(vm_id), workdir=str(conf.vms_dir() / vm_id))
                port_map = ports.allocate(vm, guest_ports, addr)
                vm.port_map = {str(g): h for g, h in sorted(port_map.items())}
                vm.save(update_fields=["port_map", "updated_at"])
        except IntegrityError:
            existing = _existing(vm_id, params)  # created meanwhile by another request
            if existing is not None:
                return CreateResult(existing, created=False)
            raise
        return _bring_up(vm, engine, image)


def _bring_up(vm: Vm, engine: Engine, image: Image) -> CreateResult:
    spec = spec_for(vm, image)
    try:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        _join_network(vm, spec)
        if vm.engine in VM_ENGINES:
            spec.disk_path = storages.get().create_disk(vm.id, image, vm.disk, spec.workdir)
            vm.disk_path = str(spec.disk_path)
            spec.seed_path = build_seed(spec.workdir / SEED_NAME, vm.id, vm.hostname, vm.ssh_keys,
                                        network_config=_seed_network(vm))
            vm.seed_path = str(spec.seed_path)
            vm.save(update_fields=["disk_path", "seed_path", "updated_at"])
        _create_guest(vm, engine, spec)
    except Exception as exc:
        expected = isinstance(exc, (errors.DomainError, ValueError, RuntimeError))
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        log.warning("create %s failed: %s", vm.id, message, exc_info=not isinstance(exc, EngineError))
        networks.forget(vm.network, vm.engine)  # it may be the cause: the next create checks it again
        cleanup_error = teardown_or_release(vm, spec, engine)
        if cleanup_error:
            message = f"{message}; cleaning up also failed: {cleanup_error}"
        vm.state, vm.error, vm.port_map, vm.disk_path, vm.seed_path = VmState.FAILED, message, {}, "", ""
        vm.save()
        return CreateResult(vm, created=True, failure=f"creating VM {vm.id} failed: {message}")
    vm.state = VmState.RUNNING
    # The private address in the create's answer: the engine's (docker: one inspect), else the assigned one.
    vm.ip = guest_ip(engine, spec) or vm.ip
    vm.save(update_fields=["state", "ip", "updated_at"])
    ssh_ready.watch(vm)
    return CreateResult(vm, created=True)


def _create_guest(vm: Vm, engine: Engine, spec: GuestSpec) -> None:
    """engine.create; when a host port was taken between its probe and the guest's start, the guest made
    is removed and tried again on new ports (PORT_ATTEMPTS in all)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            engine.create(spec)
            return
        except EngineError as exc:
            if attempt == PORT_ATTEMPTS or not ports.taken_meanwhile(exc):
                raise
            log.info("create %s: %s; trying again on new host ports", vm.id, exc)
            engine.destroy(spec)
            spec.port_map = {int(g): h for g, h in ports.reallocate(vm).items()}


def _join_network(vm: Vm, spec: GuestSpec) -> None:
    """The env network made (when this VM is its first here), and for qemu the VM's address on it."""
    networks.ensure(vm.network, vm.engine)
    if vm.network and vm.engine == "qemu":
        spec.private_ip = networks.assign_address(vm)


def _seed_network(vm: Vm) -> dict | None:
    from agent.engines import qemu_xml

    return networks.seed_network_config(vm, qemu_xml.mac_for(vm.id), qemu_xml.env_mac_for(vm.id))


# ------------------------------------------------------------------------------------------- teardown


def teardown(vm: Vm, spec: GuestSpec, engine: Engine | None) -> None:
    """Remove everything a VM has on the host (guest, disk, seed, work dir, ports). Raises EngineError
    only when the guest itself could not be removed."""
    if engine is not None:
        engine.destroy(spec)
    if spec.workdir:
        try:
            if vm.engine in VM_ENGINES or vm.disk_path:
                storages.get().destroy_disk(vm.id, spec.workdir)
        except StorageError as exc:
            log.warning("removing the disk of %s: %s", vm.id, exc)
        shutil.rmtree(spec.workdir, ignore_errors=True)
    ports.release(vm.id)
    try:
        networks.release(vm)
    except (errors.DomainError, OSError) as exc:  # the guest is gone; reconcile's sweep retries the rest
        log.warning("removing the network of %s: %s", vm.id, exc)


def teardown_or_release(vm: Vm, spec: GuestSpec, engine: Engine | None) -> str:
    """`teardown` for a record that is given up anyway (failed create, interrupted create/delete): the
    ports are released even when the guest could not be removed. Returns the cleanup error, or ""."""
    try:
        teardown(vm, spec, engine)
    except (errors.DomainError, OSError) as exc:
        log.warning("cleaning up %s failed: %s", vm.id, exc)
        ports.release(vm.id)
        return str(exc) or type(exc).__name__
    return ""


# ------------------------------------------------------------------------------------- the other verbs


def get_vm(vm_id: str) -> Vm:
    vm = Vm.objects.filter(pk=vm_id).first()
    if vm is None:
        raise errors.NotFound(f"VM {vm_id!r} not found")
    return vm


def delete_vm(vm_id: str) -> None:
    with _vm_lock(vm_id):
        vm = get_vm(vm_id)
        Vm.objects.filter(pk=vm.pk).update(state=VmState.DELETING)
        vm.state = VmState.DELETING
        try:
            engine = registry.get(vm.engine)
            teardown(vm, spec_without_image(vm, engine), engine)
        except EngineError as exc:
            vm.state, vm.error = VmState.FAILED, f"delete failed: {exc}"
            vm.save(update_fields=["state", "error", "updated_at"])
            raise errors.UpstreamFailed(f"deleting VM {vm_id} failed: {exc}") from exc
        vm.delete()


def _power(vm_id: str, verb: str, doing: str, act) -> Vm:
    """stop/start: `act(engine, spec)` on a VM that has a guest, then its state as the engine reports it."""
    with _vm_lock(vm_id):
        vm = get_vm(vm_id)
        if vm.state in (VmState.CREATING, VmState.DELETING):
            raise errors.Conflict(f"VM {vm.id} is {vm.state}; cannot {verb} it now")
        if vm.state == VmState.FAILED:
            raise errors.Conflict(f"VM {vm.id} failed ({vm.error}); delete it and create it again")
        engine = registry.available(vm.engine)
        spec = spec_for(vm)
        try:
            act(engine, spec)
        except EngineError as exc:
            apply_state(vm, engine.state(spec), engine, spec)
            raise errors.UpstreamFailed(f"{doing} VM {vm_id} failed: {exc}") from exc
        return apply_state(vm, engine.state(spec), engine, spec)


def stop_vm(vm_id: str) -> Vm:
    vm = _power(vm_id, "stop", "stopping", lambda engine, spec: engine.stop(spec, timeout=conf.stop_timeout()))
    ssh_ready.not_ready(vm)
    return vm


def _start(engine: Engine, spec: GuestSpec) -> None:
    networks.ensure(spec.network, engine.name, check=True)  # gone after a reboot of the host, say
    engine.start(spec)


def start_vm(vm_id: str) -> Vm:
    """Start the guest; it is `ssh.ready` again once it answers SSH again (agent/ssh_ready.py)."""
    vm = _power(vm_id, "start", "starting", _start)
    ssh_ready.not_ready(vm)
    ssh_ready.watch(vm)
    return vm


def console_tail(vm_id: str, lines: int) -> dict:
    """The last `lines` lines of the VM's serial console (VM engines) or its container's output (docker)."""
    vm = get_vm(vm_id)
    engine = registry.get(vm.engine)
    try:
        source, text = engine.console_tail(spec_without_image(vm, engine), lines)
    except EngineError as exc:
        raise errors.UpstreamFailed(f"reading the console of VM {vm_id} failed: {exc}") from exc
    return {"id": vm.id, "source": source, "lines": lines, "text": text}

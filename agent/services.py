"""What the agent does with VMs; the API views are thin wrappers around these functions.

Order of a create (TTstack's lesson: a crash leaves something to clean up, never a leak):
  1. validate everything that can be validated without side effects (engine, image, capacity, keys)
  2. write the Vm record (state creating) and its PortAllocation rows in one transaction
  3. work dir DATA_DIR/vms/<id>, disk overlay and NoCloud seed (VM engines), engine.create
  4. success -> running; any failure -> engine.destroy, disk, seed and ports removed, record failed + error
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, transaction

from agent import conf, images, ports
from agent import engines as registry
from agent import storage as storages
from agent.cloudinit import build_seed
from agent.engines.base import (
    MISSING,
    RUNNING,
    STOPPED,
    Engine,
    EngineError,
    EngineUnavailable,
    GuestSpec,
    Image,
)
from agent.models import Vm, VmState
from agent.storage.base import StorageError
from ttproject import errors

log = logging.getLogger(__name__)

MIB = 1024 * 1024
SEED_NAME = "seed.iso"
GUEST_DISAPPEARED = "guest disappeared"
# Parameters that make two creates of the same id "the same request".
IDENTITY_FIELDS = ("image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing", "hostname", "ssh_keys")

# One VM operation at a time per id (views may run in several threads under some servers).
_vm_locks: dict[str, threading.Lock] = {}
_vm_locks_guard = threading.Lock()


def _vm_lock(vm_id: str) -> threading.Lock:
    with _vm_locks_guard:
        return _vm_locks.setdefault(vm_id, threading.Lock())


def invalid(field: str, message: str) -> errors.Invalid:
    """A 400 about one request field, worded as a serializer's: "field: message"."""
    return errors.Invalid(f"{field}: {message}", errors={field: [message]})


@dataclass
class CreateResult:
    """What a create did: `created` is False for a repeated request; `failure` says why the guest did not
    come up (the record is kept, state failed)."""

    vm: Vm
    created: bool
    failure: str = ""


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


# ----------------------------------------------------------------------------------------- resources


def host_resources_total() -> dict:
    mem_total = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) // 1024
                    break
    except OSError:
        mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    root = conf.vms_dir()
    root.mkdir(parents=True, exist_ok=True)
    return {
        "cpu_total": os.cpu_count() or 1,
        "mem_total": mem_total,
        "disk_total": shutil.disk_usage(root).total // MIB,
    }


def resources() -> dict:
    """Totals of the host, and what this agent's VMs reserve: running/creating VMs hold cpu and mem,
    every VM that still has its guest (stopped too) holds its disk."""
    totals = host_resources_total()
    cpu_used = mem_used = disk_used = 0
    for vm in Vm.objects.exclude(state__in=[VmState.FAILED]).only("cpu", "mem", "disk", "state"):
        disk_used += vm.disk
        if vm.state in (VmState.CREATING, VmState.RUNNING):
            cpu_used += vm.cpu
            mem_used += vm.mem
    return {**totals, "cpu_used": cpu_used, "mem_used": mem_used, "disk_used": disk_used}


# ---------------------------------------------------------------------------------------------- images


def _engines_for_disk(image: Image, available: list[str]) -> list[str]:
    can = ["qemu", "bhyve"] + (["firecracker"] if image.kernel else [])
    return [name for name in available if name in can]


def image_json(image: Image, engines: list[str]) -> dict:
    return {
        "name": image.name,
        "engines": engines,
        "kind": "docker" if image.engine_kind == "docker" else "disk",
        "format": "docker" if image.engine_kind == "docker" else image.disk_format,
        "size": int(image.size),
        "description": image.extra.get("description", ""),
    }


def list_images() -> list[dict]:
    available, _ = registry.status()
    result = []
    try:
        disk_images = storages.get().images()
    except StorageError as exc:
        log.warning("images: %s", exc)
        disk_images = []
    for image in disk_images:
        result.append(image_json(image, _engines_for_disk(image, available)))
    for name in available:
        if registry.is_vm_engine(name):
            continue
        try:
            for image in registry.get(name).images():
                result.append(image_json(image, [name]))
        except EngineError as exc:
            log.warning("images of %s: %s", name, exc)
    return result


def resolve_image(name: str, engine_name: str, engine: Engine) -> Image:
    """The image to boot, or a 400 naming the problem. Names are checked before any path is built."""
    is_docker = engine_name == "docker"
    try:
        images.check_name(name, docker=is_docker)
    except images.ImageNameError as exc:
        raise invalid("image", str(exc)) from exc
    if engine.is_vm or registry.is_vm_engine(engine_name):
        storage = storages.get()
        if storage.name == "file":
            image = images.find_disk_image(name, getattr(storage, "image_dir", None))
            where = str(conf.image_dir())
        else:
            image = next((i for i in storage.images() if i.name == name), None)
            where = f"the {storage.name} storage"
        if image is None:
            raise invalid("image", f"unknown image {name!r}: no such disk image in {where}")
        return image
    finder = getattr(engine, "find_image", None)
    if finder is not None:
        image = finder(name)
    else:
        ref = images.docker_ref(name)
        image = next((i for i in engine.images() if i.name in (name, ref)), None)
    if image is None:
        raise invalid("image", f"unknown image {name!r}: not among the {engine_name} engine's images")
    return image


def _image_for_spec(vm: Vm) -> Image:
    """The VM's image for an engine call; a placeholder when it is gone (destroy needs none)."""
    try:
        engine = registry.get(vm.engine)
        return resolve_image(vm.image, vm.engine, engine)
    except (errors.Invalid, EngineError, KeyError, StorageError):
        return Image(name=vm.image, engine_kind="docker" if vm.engine == "docker" else "vm")


# ---------------------------------------------------------------------------------------------- specs


def spec_for(vm: Vm, image: Image | None = None) -> GuestSpec:
    return GuestSpec(
        vm_id=vm.id,
        name=vm.guest_name or conf.guest_name(vm.id),
        host_id=conf.host_id(),
        image=image or _image_for_spec(vm),
        cpu=vm.cpu,
        mem=vm.mem,
        disk=vm.disk,
        port_map={int(g): int(h) for g, h in (vm.port_map or {}).items()},
        publish_addr=vm.publish_addr,
        deny_outgoing=vm.deny_outgoing,
        hostname=vm.hostname,
        ssh_keys=list(vm.ssh_keys or []),
        disk_path=Path(vm.disk_path) if vm.disk_path else None,
        seed_path=Path(vm.seed_path) if vm.seed_path else None,
        workdir=Path(vm.workdir) if vm.workdir else conf.vms_dir() / vm.id,
    )


def _orphan_spec(vm_id: str) -> GuestSpec:
    return GuestSpec(vm_id=vm_id, name=conf.guest_name(vm_id), host_id=conf.host_id(),
                     image=Image(name="", engine_kind="vm"), cpu=1, mem=1, disk=1, port_map={},
                     publish_addr=conf.publish_addr(), workdir=conf.vms_dir() / vm_id)


# --------------------------------------------------------------------------------------------- create


def _params(vm: Vm) -> dict:
    return {f: getattr(vm, f) for f in IDENTITY_FIELDS}


def _check_capacity(cpu: int, mem: int, disk: int) -> None:
    total = host_resources_total()
    for field, value, limit, unit in (("cpu", cpu, total["cpu_total"], "CPUs"),
                                      ("mem", mem, total["mem_total"], "MiB of memory"),
                                      ("disk", disk, total["disk_total"], "MiB of disk")):
        if value > limit:
            raise errors.Refused(f"{field} {value} is more than this host has ({limit} {unit})")


def _existing(vm_id: str, params: dict) -> Vm | None:
    vm = Vm.objects.filter(pk=vm_id).first()
    if vm is None:
        return None
    if _params(vm) != params:
        diff = ", ".join(f"{f}: {getattr(vm, f)!r} != {params[f]!r}" for f in IDENTITY_FIELDS
                         if getattr(vm, f) != params[f])
        raise errors.Conflict(f"VM {vm_id} already exists with different parameters ({diff})")
    return vm


def create_vm(req: CreateRequest) -> CreateResult:
    """Raises domain errors for refused requests (nothing is left behind); a guest that fails to come up
    is a result with `failure` set, its record kept in state failed."""
    vm_id = req.id or f"vm-{uuid.uuid4().hex[:12]}"
    is_vm = registry.is_vm_engine(req.engine)
    guest_ports = sorted(set(req.ports or []) | ({22} if is_vm else set()))
    if len(guest_ports) > conf.MAX_PORTS_PER_VM:
        raise invalid("ports", f"at most {conf.MAX_PORTS_PER_VM} ports per VM ({len(guest_ports)} with 22)")
    params = {"image": req.image, "engine": req.engine, "cpu": req.cpu, "mem": req.mem, "disk": req.disk,
              "ports": guest_ports, "deny_outgoing": req.deny_outgoing, "hostname": req.hostname or vm_id,
              "ssh_keys": list(req.ssh_keys or [])}
    with _vm_lock(vm_id):
        existing = _existing(vm_id, params)
        if existing is not None:
            return CreateResult(existing, created=False)
        try:
            engine = registry.available(req.engine)
        except EngineUnavailable as exc:
            raise errors.Refused(str(exc)) from exc
        image = resolve_image(req.image, req.engine, engine)
        _check_capacity(req.cpu, req.mem, req.disk)
        addr = conf.publish_addr()
        workdir = conf.vms_dir() / vm_id
        try:
            with transaction.atomic():
                vm = Vm.objects.create(id=vm_id, **params, state=VmState.CREATING, publish_addr=addr,
                                       guest_name=conf.guest_name(vm_id), workdir=str(workdir))
                port_map = ports.allocate(vm, guest_ports, addr)
                vm.port_map = {str(g): h for g, h in sorted(port_map.items())}
                vm.save(update_fields=["port_map", "updated_at"])
        except IntegrityError:
            existing = _existing(vm_id, params)  # created meanwhile by another request
            if existing is not None:
                return CreateResult(existing, created=False)
            raise
        except ports.NoFreePort as exc:
            raise errors.Refused(str(exc)) from exc
        return _bring_up(vm, engine, image)


def _bring_up(vm: Vm, engine: Engine, image: Image) -> CreateResult:
    spec = spec_for(vm, image)
    try:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        if engine.is_vm:
            spec.disk_path = storages.get().create_disk(vm.id, image, vm.disk, spec.workdir)
            vm.disk_path = str(spec.disk_path)
            spec.seed_path = build_seed(spec.workdir / SEED_NAME, vm.id, vm.hostname, vm.ssh_keys)
            vm.seed_path = str(spec.seed_path)
            vm.save(update_fields=["disk_path", "seed_path", "updated_at"])
        engine.create(spec)
    except Exception as exc:
        message = str(exc) if isinstance(exc, (EngineError, StorageError, ValueError, RuntimeError)) \
            else f"{type(exc).__name__}: {exc}"
        log.warning("create %s failed: %s", vm.id, message, exc_info=not isinstance(exc, EngineError))
        cleanup_error = _teardown_or_release(vm, spec, engine)
        if cleanup_error:
            message = f"{message}; cleaning up also failed: {cleanup_error}"
        vm.state, vm.error, vm.port_map, vm.disk_path, vm.seed_path = VmState.FAILED, message, {}, "", ""
        vm.save()
        return CreateResult(vm, created=True, failure=f"creating VM {vm.id} failed: {message}")
    vm.state = VmState.RUNNING
    # A container's address is only a convenience (it is reached through its published ports): it is
    # filled in by the next GET, which keeps a docker create as quick as a plain `docker run`.
    vm.ip = _ip(engine, spec) if engine.is_vm else ""
    vm.save(update_fields=["state", "ip", "updated_at"])
    return CreateResult(vm, created=True)


def _ip(engine: Engine, spec: GuestSpec) -> str:
    try:
        return engine.ip(spec) or ""
    except Exception as exc:  # an address is nice to have, never a reason to fail
        log.debug("ip of %s: %s", spec.vm_id, exc)
        return ""


def _teardown(vm: Vm, spec: GuestSpec, engine: Engine | None) -> None:
    """Remove everything a VM has on the host (guest, disk, seed, work dir, ports). Raises EngineError
    only when the guest itself could not be removed."""
    if engine is not None:
        engine.destroy(spec)
    if spec.workdir:
        try:
            if registry.is_vm_engine(vm.engine) or vm.disk_path:
                storages.get().destroy_disk(vm.id, spec.workdir)
        except StorageError as exc:
            log.warning("removing the disk of %s: %s", vm.id, exc)
        shutil.rmtree(spec.workdir, ignore_errors=True)
    ports.release(vm.id)


def _teardown_or_release(vm: Vm, spec: GuestSpec, engine: Engine | None) -> str:
    """_teardown for a record that is given up anyway (failed create, interrupted create/delete): the
    ports are released even when the guest could not be removed. Returns the cleanup error, or ""."""
    try:
        _teardown(vm, spec, engine)
    except (EngineError, StorageError, OSError) as exc:
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
        spec = spec_for(vm, Image(name=vm.image, engine_kind="docker" if vm.engine == "docker" else "vm"))
        try:
            engine = registry.get(vm.engine)
            _teardown(vm, spec, engine)
        except (EngineError, KeyError) as exc:
            vm.state, vm.error = VmState.FAILED, f"delete failed: {exc}"
            vm.save(update_fields=["state", "error", "updated_at"])
            raise errors.UpstreamFailed(f"deleting VM {vm_id} failed: {exc}") from exc
        vm.delete()


def _usable(vm: Vm, verb: str) -> Engine:
    if vm.state in (VmState.CREATING, VmState.DELETING):
        raise errors.Conflict(f"VM {vm.id} is {vm.state}; cannot {verb} it now")
    if vm.state == VmState.FAILED:
        raise errors.Conflict(f"VM {vm.id} failed ({vm.error}); delete it and create it again")
    try:
        return registry.available(vm.engine)
    except EngineUnavailable as exc:
        raise errors.Refused(str(exc)) from exc


def stop_vm(vm_id: str) -> Vm:
    with _vm_lock(vm_id):
        vm = get_vm(vm_id)
        engine = _usable(vm, "stop")
        spec = spec_for(vm)
        try:
            engine.stop(spec, timeout=conf.stop_timeout())
        except EngineError as exc:
            raise errors.UpstreamFailed(f"stopping VM {vm_id} failed: {exc}") from exc
        return _apply_state(vm, engine.state(spec), engine, spec)


def start_vm(vm_id: str) -> Vm:
    with _vm_lock(vm_id):
        vm = get_vm(vm_id)
        engine = _usable(vm, "start")
        spec = spec_for(vm)
        try:
            engine.start(spec)
        except EngineError as exc:
            _apply_state(vm, engine.state(spec), engine, spec)
            raise errors.UpstreamFailed(f"starting VM {vm_id} failed: {exc}") from exc
        return _apply_state(vm, engine.state(spec), engine, spec)


def _apply_state(vm: Vm, state: str, engine: Engine | None = None, spec: GuestSpec | None = None) -> Vm:
    """Record what the engine reports for a VM that should have a guest."""
    before = (vm.state, vm.ip, vm.error)
    if state == RUNNING:
        vm.state = VmState.RUNNING
        if engine is not None and spec is not None:
            vm.ip = _ip(engine, spec) or vm.ip
    elif state == STOPPED:
        vm.state = VmState.STOPPED
    elif state == MISSING:
        vm.state, vm.error = VmState.FAILED, GUEST_DISAPPEARED
    if vm.error == GUEST_DISAPPEARED and state in (RUNNING, STOPPED):
        vm.error = ""
    if (vm.state, vm.ip, vm.error) != before:
        vm.save(update_fields=["state", "ip", "error", "updated_at"])
    return vm


def refresh(vm: Vm) -> Vm:
    """Bring one record's state up to date with its engine (when the engine answers)."""
    if vm.state not in (VmState.RUNNING, VmState.STOPPED) and vm.error != GUEST_DISAPPEARED:
        return vm
    try:
        engine = registry.available(vm.engine)
        spec = spec_for(vm, Image(name=vm.image, engine_kind="docker" if vm.engine == "docker" else "vm"))
        return _apply_state(vm, engine.state(spec), engine, spec)
    except (EngineError, KeyError) as exc:
        log.info("refresh %s: %s", vm.id, exc)
        return vm


def refresh_all(vms: list[Vm]) -> list[Vm]:
    """One list_guests() per engine instead of one call per VM."""
    by_engine: dict[str, dict[str, str] | None] = {}
    for vm in vms:
        if vm.state not in (VmState.RUNNING, VmState.STOPPED) and vm.error != GUEST_DISAPPEARED:
            continue
        if vm.engine not in by_engine:
            try:
                by_engine[vm.engine] = registry.available(vm.engine).list_guests()
            except (EngineError, KeyError) as exc:
                log.info("refresh %s guests: %s", vm.engine, exc)
                by_engine[vm.engine] = None
        guests = by_engine[vm.engine]
        if guests is not None:
            _apply_state(vm, guests.get(vm.id, MISSING))
    return vms


# ------------------------------------------------------------------------------------------ reconcile


def reconcile() -> dict:
    """Make records and guests agree after a (re)start. Engines that do not answer are left alone."""
    summary = {"found": 0, "missing": 0, "orphans": 0, "interrupted": 0}
    for name in conf.ENGINE_NAMES:
        ok, _why = registry.probe(name)
        records = list(Vm.objects.filter(engine=name))
        if not ok:
            continue
        engine = registry.get(name)
        try:
            guests = engine.list_guests()
        except EngineError as exc:
            log.warning("reconcile: listing %s guests failed: %s", name, exc)
            continue
        for vm in records:
            spec = spec_for(vm)
            if vm.state in (VmState.CREATING, VmState.DELETING):
                summary["interrupted"] += 1
                if _teardown_or_release(vm, spec, engine):  # ports are released either way
                    log.warning("reconcile: cleaning up %s failed", vm.id)
                if vm.state == VmState.DELETING:
                    vm.delete()
                    log.info("reconcile: finished deleting %s", vm.id)
                else:
                    vm.state, vm.error, vm.port_map = VmState.FAILED, "the agent stopped while creating it", {}
                    vm.save()
                    log.info("reconcile: %s was being created when the agent stopped; marked failed", vm.id)
                continue
            if vm.id in guests:
                summary["found"] += 1
                if vm.state != VmState.FAILED or vm.error == GUEST_DISAPPEARED:
                    _apply_state(vm, guests[vm.id], engine, spec)
            elif vm.state in (VmState.RUNNING, VmState.STOPPED):
                summary["missing"] += 1
                log.warning("reconcile: the guest of %s disappeared", vm.id)
                _apply_state(vm, MISSING)
        known = {vm.id for vm in records}
        for vm_id in sorted(set(guests) - known):
            summary["orphans"] += 1
            log.warning("reconcile: destroying orphan %s guest %s (no record)", name, vm_id)
            try:
                engine.destroy(_orphan_spec(vm_id))
            except EngineError as exc:
                log.warning("reconcile: destroying orphan %s failed: %s", vm_id, exc)
                continue
            if not Vm.objects.filter(pk=vm_id).exists():
                shutil.rmtree(conf.vms_dir() / vm_id, ignore_errors=True)
    log.info("reconcile: %s", summary)
    return summary


# ----------------------------------------------------------------------------------------------- info


def info() -> dict:
    available, unavailable = registry.status()
    return {
        "host_id": conf.host_id(),
        "hostname": socket.gethostname(),
        "version": _version(),
        "engines": available,
        "engines_unavailable": unavailable,
        "storage": storages.get().name,
        "resources": resources(),
        "images": list_images(),
        "vm_count": Vm.objects.count(),
    }


def _version() -> str:
    from ttproject.urls.common import VERSION

    return VERSION

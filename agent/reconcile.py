"""After a (re)start of the agent, records and guests are made to agree; engines that do not answer are
left alone.

- record + guest: the record takes the guest's state
- record without guest: failed, "guest disappeared"
- guest labelled with this agent's host id but without a record: destroyed (an orphan)
- a record left `creating` by a crash: cleaned up and failed; `deleting`: the delete is finished
- environment networks (bridges, chains, name servers, docker networks and holders) of this agent that no
  record needs: removed; the ones still needed: made whole (agent/net)
"""

from __future__ import annotations

import logging
import shutil

from agent import conf
from agent import engines as registry
from agent import net as networks
from agent.engines.base import MISSING, Engine, EngineError
from agent.guest_state import GUEST_DISAPPEARED, apply_state
from agent.lifecycle import teardown_or_release
from agent.models import Vm, VmState
from agent.specs import orphan_spec, spec_without_image
from ttproject.vocabulary import ENGINES, ENGINES_WITH_NETWORKS

log = logging.getLogger(__name__)


def _finish_interrupted(vm: Vm, engine: Engine) -> None:
    if teardown_or_release(vm, spec_without_image(vm, engine), engine):  # ports are released either way
        log.warning("reconcile: cleaning up %s failed", vm.id)
    if vm.state == VmState.DELETING:
        vm.delete()
        log.info("reconcile: finished deleting %s", vm.id)
    else:
        vm.state, vm.error, vm.port_map = VmState.FAILED, "the agent stopped while creating it", {}
        vm.save()
        log.info("reconcile: %s was being created when the agent stopped; marked failed", vm.id)


def _destroy_orphan(name: str, engine: Engine, vm_id: str) -> None:
    log.warning("reconcile: destroying orphan %s guest %s (no record)", name, vm_id)
    try:
        engine.destroy(orphan_spec(vm_id, engine))
    except EngineError as exc:
        log.warning("reconcile: destroying orphan %s failed: %s", vm_id, exc)
        return
    if not Vm.objects.filter(pk=vm_id).exists():
        shutil.rmtree(conf.vms_dir() / vm_id, ignore_errors=True)


def _sweep_networks(name: str) -> int:
    if name not in ENGINES_WITH_NETWORKS:
        return 0
    try:
        return len(networks.sweep(name)["removed"])
    except (EngineError, OSError) as exc:
        log.warning("reconcile: sweeping %s networks failed: %s", name, exc)
        return 0


def reconcile() -> dict:
    """Returns how many records were found with their guest, missing it, interrupted, and orphans."""
    summary = {"found": 0, "missing": 0, "orphans": 0, "interrupted": 0, "networks_removed": 0}
    for name in ENGINES:
        ok, _why = registry.probe(name)
        if not ok:
            continue
        records = list(Vm.objects.filter(engine=name))
        engine = registry.get(name)
        try:
            guests = engine.list_guests()
        except EngineError as exc:
            log.warning("reconcile: listing %s guests failed: %s", name, exc)
            continue
        for vm in records:
            if vm.state in (VmState.CREATING, VmState.DELETING):
                summary["interrupted"] += 1
                _finish_interrupted(vm, engine)
            elif vm.id in guests:
                summary["found"] += 1
                if vm.state != VmState.FAILED or vm.error == GUEST_DISAPPEARED:
                    apply_state(vm, guests[vm.id], engine, spec_without_image(vm, engine))
            elif vm.state in (VmState.RUNNING, VmState.STOPPED):
                summary["missing"] += 1
                log.warning("reconcile: the guest of %s disappeared", vm.id)
                apply_state(vm, MISSING)
        for vm_id in sorted(set(guests) - {vm.id for vm in records}):
            summary["orphans"] += 1
            _destroy_orphan(name, engine, vm_id)
        summary["networks_removed"] += _sweep_networks(name)
    log.info("reconcile: %s", summary)
    return summary

"""Registering and removing hosts (agents). Failures are domain errors; the API layer answers them.

Each host has its own key, given at registration: the probe and every later call use that key only.
A VM on an agent carries the id of the controller that asked for it (fleet.identity): VMs of other
controllers, or made directly on the agent, are only reported (`foreign_vms`); this controller's own VMs
that it no longer knows (a host that comes back after it was detached or removed) are destroyed when the
host is registered again.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from ttproject.errors import Conflict, Invalid, NotFound

from .agent_client import AgentClient, AgentError, parallel
from .choices import EnvState, HostState, VmState
from .identity import controller_id
from .models import Environment, Host, Vm
from .teardown import finish_delete
from .transitions import SETTLED

log = logging.getLogger(__name__)


def _registered(addr: str) -> Conflict:
    return Conflict(f"host {addr} is already registered")


def is_mine(agent_vm: dict) -> bool:
    """Did this controller ask for this VM (the agent's `controller` field)?"""
    return agent_vm.get("controller") == controller_id()


def foreign_vms(agent_vms: list[dict]) -> list[dict]:
    """[{id, controller}] of the agent's VMs another controller made (controller "": made on the agent)."""
    return sorted(({"id": str(vm.get("id")), "controller": str(vm.get("controller") or "")}
                   for vm in agent_vms if vm.get("id") and not is_mine(vm)), key=lambda vm: vm["id"])


def destroy_own_leftovers(host: Host, agent_vms: list[dict]) -> list[str]:
    """Destroy the VMs on the host's agent that this controller made but no longer has a live row for
    (what a detached or removed host still runs for it). Returns the ids destroyed; one that fails is
    logged and left to orphan collection."""
    mine = {str(vm["id"]) for vm in agent_vms if vm.get("id") and is_mine(vm)}
    known = set(Vm.objects.filter(pk__in=mine, gone=False).values_list("pk", flat=True))

    def destroy(vm_id: str) -> str | None:
        try:
            with AgentClient.for_host(host) as agent:
                agent.delete_vm(vm_id)
        except AgentError as exc:
            log.warning("host %s: could not destroy leftover VM %s: %s", host.addr, vm_id, exc)
            return None
        log.warning("host %s: destroyed leftover VM %s (this controller's, no environment has it)", host.addr,
                    vm_id)
        return vm_id

    return [vm_id for vm_id in parallel(destroy, sorted(mine - known)) if vm_id]


def register_host(addr: str, api_key: str = "", drain: bool = False) -> Host:
    """Probe the agent (/api/info and /api/vms, with the host's own key only) and save the host, then
    destroy what the agent still runs for this controller that no environment has. Invalid when the
    agent cannot be reached or does not answer like a ttstack agent (nothing is saved); Conflict when
    the address is registered already (a detached host registered again is attached anew)."""
    if Host.objects.filter(addr=addr).exclude(state=HostState.DETACHED).exists():
        raise _registered(addr)
    try:
        with AgentClient(addr, api_key or None) as agent:
            info = agent.info()
            agent_vms = agent.list_vms()
    except AgentError as exc:
        message = f"cannot register: {exc}"
        raise Invalid(f"addr: {message}", errors={"addr": [message]}) from exc
    host = Host.objects.filter(addr=addr, state=HostState.DETACHED).first() or Host(addr=addr)
    host.api_key, host.drain, host.state, host.last_seen, host.error = api_key, drain, HostState.ONLINE, \
        timezone.now(), ""
    host.foreign_vms = foreign_vms(agent_vms)
    host.apply_info(info)
    try:
        with transaction.atomic():
            host.save()
    except IntegrityError as exc:
        raise _registered(addr) from exc
    destroy_own_leftovers(host, agent_vms)
    return host


def update_host(host_id: int, **fields) -> None:
    """Set `drain` (take no new placements) and/or the host's own `api_key`."""
    if fields:
        Host.objects.filter(pk=host_id).update(**fields)


def remove_host(host_id: int) -> None:
    """Delete a host the controller has no live VM on (Conflict otherwise)."""
    with transaction.atomic():
        # Lock the row first, so a placement (which locks hosts too) cannot put VMs on it meanwhile.
        host = Host.objects.select_for_update().filter(pk=host_id).first()
        if host is None:
            raise NotFound(f"host {host_id!r} not found")
        live = Vm.objects.filter(host_id=host.pk, gone=False).count()
        if live:
            raise Conflict(f"host {host.addr} still has {live} VM(s); delete their environments first "
                           "(drain the host to stop new placements), or detach the host if it is gone for good")
        Vm.objects.filter(host_id=host.pk).update(host=None)  # only gone VMs are left: their rows stay as history
        host.delete()


def detach_host(host_id: int) -> list[str]:
    """Give a host up for good (its agent is dead or unreachable): the host is `detached` (no heartbeat, no
    placement), its live VMs become lost (failed and gone, their reservations freed), environments being
    deleted finish without the agent and the others that had a VM there go failed. What the agent still
    runs for this controller is destroyed if it is registered again. Returns the affected environments."""
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(pk=host_id).first()
        if host is None:
            raise NotFound(f"host {host_id!r} not found")
        Host.objects.filter(pk=host.pk).update(state=HostState.DETACHED, drain=True,
                                               error="detached by an operator")
        lost = Vm.objects.filter(host_id=host.pk, gone=False)
        env_ids = sorted(set(lost.values_list("env_id", flat=True)))
        lost.update(state=VmState.FAILED, doomed=True, gone=True, error=f"lost: host {host.addr} was detached",
                    updated_at=timezone.now())
    log.warning("host %s detached: %d environment(s) lost VMs on it", host.addr, len(env_ids))
    for env in Environment.objects.filter(pk__in=env_ids):
        if env.state == EnvState.DELETING:
            finish_delete(env.pk)  # no-op while VMs on other hosts are still to be confirmed
        elif env.state in SETTLED:  # a job under way ends the env itself, seeing its VMs lost
            env.set_state(EnvState.FAILED, only_from=SETTLED, error=f"VM(s) lost: host {host.addr} was detached")
    return env_ids

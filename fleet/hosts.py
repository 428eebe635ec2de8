"""Registering and removing hosts (agents). Failures are domain errors; the API layer answers them."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from ttproject.errors import Conflict, Invalid, NotFound

from .agent_client import AgentClient, AgentError
from .choices import HostState
from .models import Host, Vm


def _registered(addr: str) -> Conflict:
    return Conflict(f"host {addr} is already registered")


def register_host(addr: str, api_key: str = "", drain: bool = False) -> Host:
    """Probe the agent's /api/info and save the host. Invalid when the agent cannot be reached or does not
    answer like a ttstack agent (nothing is saved); Conflict when the address is registered already."""
    if Host.objects.filter(addr=addr).exists():
        raise _registered(addr)
    try:
        with AgentClient(addr, api_key or None) as agent:
            info = agent.info()
    except AgentError as exc:
        message = f"cannot register: {exc}"
        raise Invalid(f"addr: {message}", errors={"addr": [message]}) from exc
    host = Host(addr=addr, api_key=api_key, drain=drain, state=HostState.ONLINE, last_seen=timezone.now())
    host.apply_info(info)
    try:
        with transaction.atomic():
            host.save()
    except IntegrityError as exc:
        raise _registered(addr) from exc
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
                           "(drain the host to stop new placements)")
        host.delete()

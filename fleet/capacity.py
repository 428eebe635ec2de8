"""What each host has free, read from the database for the placement algorithm (fleet.placement).

Free = total (cpu times TTSTACK_CPU_OVERCOMMIT) - what the controller's own live VMs reserve
(fleet.models.reserved_by_host). Callers that act on the answer lock the host rows first
(`locked_caps`), so two placements or starts on the same hosts run one after the other:
PostgreSQL takes the row locks in id order; SQLite opens every transaction IMMEDIATE, which takes the
database's write lock at BEGIN.
"""

from __future__ import annotations

from . import conf, placement
from .choices import HostState, VmState
from .models import Environment, Host, reserved_by_host


def host_caps(hosts: list[Host], reserved: dict[int, dict]) -> list[placement.HostCap]:
    caps = []
    for h in hosts:
        r = reserved.get(h.id, {})
        images: dict[str, frozenset[str]] = {}
        for img in h.images or []:
            if isinstance(img, dict) and img.get("name"):
                images[img["name"]] = frozenset(img.get("engines") or ())
            elif isinstance(img, str):
                images[img] = frozenset()
        cpu_total = int(h.cpu_total * conf.CPU_OVERCOMMIT)
        caps.append(placement.HostCap(
            id=h.id, name=f"host {h.id} ({h.addr})", online=h.state == HostState.ONLINE, drain=h.drain,
            engines=frozenset(h.engines or ()), images=images,
            cpu_free=cpu_total - (r.get("cpu") or 0),
            mem_free=h.mem_total - (r.get("mem") or 0),
            disk_free=h.disk_total - (r.get("disk") or 0),
        ))
    return caps


def locked_caps(host_ids=None, *, exclude_env: str | None = None) -> list[placement.HostCap]:
    """The hosts (all, or those of `host_ids`) locked for the rest of the transaction, with what they
    have free; `exclude_env`'s own VMs are not counted as reserving anything."""
    hosts = Host.objects.select_for_update().order_by("id")
    if host_ids is not None:
        hosts = hosts.filter(pk__in=host_ids)
    hosts = list(hosts)
    return host_caps(hosts, reserved_by_host([h.id for h in hosts], exclude_env=exclude_env))


def shortfalls_to_start(env: Environment) -> list[str]:
    """Why the environment's stopped VMs no longer fit on their hosts, one line per host ([] = they fit).

    Stopped VMs hold only their disk, so their hosts may have given cpu/mem away meanwhile: each host
    must still have room for all of the environment's VMs on it, counted against what the other
    environments reserve. Call inside a transaction: the hosts stay locked until it ends."""
    vms = list(env.vms.filter(gone=False, host__isnull=False).values_list("host_id", "state", "cpu", "mem", "disk"))
    waking = {host_id for host_id, state, *_ in vms if state == VmState.STOPPED}
    if not waking:
        return []
    need: dict[int, list[int]] = {host_id: [0, 0, 0] for host_id in waking}
    for host_id, _state, cpu, mem, disk in vms:
        if host_id in need:
            need[host_id] = [a + b for a, b in zip(need[host_id], (cpu, mem, disk), strict=True)]
    short = []
    for cap in locked_caps(waking, exclude_env=env.id):
        reason = placement.capacity_reason(cap, placement.VmReq("", "", *need[cap.id]))
        if reason:
            short.append(f"{cap.name}: {reason}")
    return short

"""Placement: a pure function from host capacities and VM specs to a host per VM.

Policy "best-fit" (default): each VM goes to the host that, among those that can take it, has the
least free memory (then CPU, then disk) — hosts are filled one after another and large holes stay
free for large VMs. "spread": the host with the most free memory first. VMs are placed largest
first so a big VM is not left without room by small ones.

A host can take a VM when it is online, not drained, has the VM's engine available, has the image
(any image for engines in IMAGE_FREE_ENGINES: docker images are tags, checked by the agent), and has
free cpu, mem and disk. Free = total (cpu times TTSTACK_CPU_OVERCOMMIT) - what the controller's own
live VMs reserve: placements not yet on the agent count at once, and a delete frees its share as soon
as the agent confirmed it (the agent's own "used" figures lag by a heartbeat, so they are only shown).
Stopped VMs keep their disk reservation only (callers sum them that way).

Nothing is read from or written to the database here: fleet.capacity reads the free figures (with the
hosts locked) and fleet.lifecycle makes the environment.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .choices import IMAGE_FREE_ENGINES


@dataclass
class HostCap:
    id: int
    name: str
    online: bool = True
    drain: bool = False
    engines: frozenset[str] = frozenset()
    images: dict[str, frozenset[str]] = field(default_factory=dict)  # image name -> engines ("" = any)
    cpu_free: int = 0
    mem_free: int = 0
    disk_free: int = 0


@dataclass(frozen=True)
class VmReq:
    image: str
    engine: str
    cpu: int
    mem: int
    disk: int


class NoFit(Exception):
    """No placement exists; `reasons` says why per host (and `vm` which VM could not be placed)."""

    def __init__(self, vm_index: int, vm: VmReq, reasons: dict[str, str]):
        self.vm_index, self.vm, self.reasons = vm_index, vm, reasons
        why = "; ".join(f"{host}: {reason}" for host, reason in reasons.items()) or "no hosts registered"
        super().__init__(
            f"no host can take VM {vm_index} ({vm.engine} {vm.image}, cpu {vm.cpu}, mem {vm.mem} MiB, "
            f"disk {vm.disk} MiB) — {why}"
        )


def has_image(host: HostCap, image: str, engine: str) -> bool:
    if engine in IMAGE_FREE_ENGINES:
        return True
    engines = host.images.get(image)
    return engines is not None and (not engines or engine in engines)


def static_reason(host: HostCap, vm: VmReq) -> str | None:
    """Why this host can never take this VM, whatever its load (None = it could)."""
    if not host.online:
        return "offline"
    if host.drain:
        return "draining (no new placements)"
    if vm.engine not in host.engines:
        return f"engine {vm.engine} not available"
    if not has_image(host, vm.image, vm.engine):
        return f"image {vm.image} not present for {vm.engine}"
    return None


def capacity_reason(host: HostCap, vm: VmReq) -> str | None:
    short = []
    if vm.cpu > host.cpu_free:
        short.append(f"cpu {vm.cpu} > {host.cpu_free} free")
    if vm.mem > host.mem_free:
        short.append(f"mem {vm.mem} > {host.mem_free} MiB free")
    if vm.disk > host.disk_free:
        short.append(f"disk {vm.disk} > {host.disk_free} MiB free")
    return "not enough capacity: " + ", ".join(short) if short else None


def _key(host: HostCap, spread: bool):
    key = (host.mem_free, host.cpu_free, host.disk_free, host.id)
    return tuple(-k for k in key[:3]) + (host.id,) if spread else key


def place(hosts: list[HostCap], vms: list[VmReq], policy: str = "best-fit") -> list[int]:
    """Return the host id for each VM (same order as `vms`), or raise NoFit. `hosts` is not modified."""
    spread = policy == "spread"
    free = {h.id: HostCap(**{**h.__dict__}) for h in hosts}
    result: list[int | None] = [None] * len(vms)
    order = sorted(range(len(vms)), key=lambda i: (vms[i].mem, vms[i].cpu, vms[i].disk), reverse=True)
    # Candidates per (engine, image), kept sorted by the policy's key; a host that can no longer
    # take the smallest VM of the request leaves the list, so scans stay short.
    smallest = (min((v.cpu for v in vms), default=0), min((v.mem for v in vms), default=0),
                min((v.disk for v in vms), default=0))
    lists: dict[tuple[str, str], list[tuple]] = {}

    def candidates(vm: VmReq) -> list[tuple]:
        ck = (vm.engine, vm.image)
        if ck not in lists:
            lists[ck] = sorted(_key(h, spread) for h in free.values() if static_reason(h, vm) is None)
        return lists[ck]

    for i in order:
        vm = vms[i]
        cand = candidates(vm)
        chosen = None
        for pos, key in enumerate(cand):
            host = free[key[-1]]
            if capacity_reason(host, vm) is None:
                chosen = (pos, host)
                break
        if chosen is None:
            raise NoFit(i, vm, {h.name: (static_reason(free[h.id], vm) or capacity_reason(free[h.id], vm)
                                         or "fits only if other VMs of this request go elsewhere")
                                for h in hosts})
        pos, host = chosen
        old_key = _key(host, spread)
        host.cpu_free -= vm.cpu
        host.mem_free -= vm.mem
        host.disk_free -= vm.disk
        result[i] = host.id
        new_key = _key(host, spread)
        full = host.cpu_free < smallest[0] or host.mem_free < smallest[1] or host.disk_free < smallest[2]
        for lst in lists.values():
            j = bisect.bisect_left(lst, old_key)
            if j < len(lst) and lst[j] == old_key:
                del lst[j]
                if not full:
                    bisect.insort(lst, new_key)
    return result  # type: ignore[return-value]

"""Quotas: the most one owner may hold at once — environments, VMs, vCPUs, memory, disk.

An owner's own Quota row wins field by field over the default row (owner `*`); a field null in both is
unlimited. `check()` runs inside the create's transaction after the host rows are locked
(fleet.capacity.locked_caps: every create locks them all), so two racing creates of one owner are
counted one after the other and cannot both pass. Operators' own requests are not limited.
"""

from __future__ import annotations

from django.db.models import Count, Sum

from ttproject.errors import Refused

from .choices import EnvState
from .models import Environment, Vm
from .models_governance import DEFAULT_QUOTA_OWNER, QUOTA_FIELDS, Quota
from .placement import VmReq

UNITS = {"mem": " MiB", "disk": " MiB"}


def limits(owner: str) -> dict[str, int | None]:
    """{field: limit or None} for the owner (her row over the default row)."""
    rows = {q.owner: q for q in Quota.objects.filter(owner__in=[owner, DEFAULT_QUOTA_OWNER])}
    own, default = rows.get(owner), rows.get(DEFAULT_QUOTA_OWNER)
    out = {}
    for field in QUOTA_FIELDS:
        value = getattr(own, field) if own is not None else None
        out[field] = value if value is not None else (getattr(default, field) if default is not None else None)
    return out


def usage(owner: str) -> dict[str, int]:
    """What the owner holds now: her environments not being deleted and their live VMs."""
    envs = Environment.objects.filter(owner=owner).exclude(state=EnvState.DELETING)
    sums = Vm.objects.filter(env__in=envs, gone=False).aggregate(
        vms=Count("id"), cpu=Sum("cpu"), mem=Sum("mem"), disk=Sum("disk"))
    return {"envs": envs.count(), **{k: v or 0 for k, v in sums.items()}}


def request_size(reqs: list[VmReq]) -> dict[str, int]:
    return {"envs": 1, "vms": len(reqs), "cpu": sum(r.cpu for r in reqs), "mem": sum(r.mem for r in reqs),
            "disk": sum(r.disk for r in reqs)}


def check(owner: str, reqs: list[VmReq]) -> None:
    """Refused, naming each limit passed with the request and the current use, when the create would take
    the owner over her quota. Call with the host rows locked (see the module's doc)."""
    limit = limits(owner)
    if all(v is None for v in limit.values()):
        return
    used, asked = usage(owner), request_size(reqs)
    over = {f: {"limit": limit[f], "requested": asked[f], "in_use": used[f]} for f in QUOTA_FIELDS
            if limit[f] is not None and used[f] + asked[f] > limit[f]}
    if over:
        why = "; ".join(f"{f}: requested {o['requested']}{UNITS.get(f, '')}, in use {o['in_use']}{UNITS.get(f, '')}, "
                        f"limit {o['limit']}{UNITS.get(f, '')}" for f, o in over.items())
        raise Refused(f"quota of {owner} exceeded — {why}", errors={"quota": over})


def summary(owner: str) -> dict:
    """GET /api/quotas/me: each field's limit, use and what is left (None = unlimited)."""
    limit, used = limits(owner), usage(owner)
    return {"owner": owner, **{f: {"limit": limit[f], "used": used[f],
                                   "left": None if limit[f] is None else max(0, limit[f] - used[f])}
                               for f in QUOTA_FIELDS}}

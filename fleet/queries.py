"""The read side, shared by the API and the pages: the rows each resource's serializer declares
(fleet.api.serializers `row_fields()`), in a constant number of queries whatever the number of rows,
and the fleet-wide figures."""

from __future__ import annotations

from django.db.models import Count, Q

from ttproject import exposure

from .api.serializers import EnvironmentRowSerializer, EnvironmentSerializer, HostSerializer, VmSerializer
from .choices import HostState
from .identity import controller_id
from .models import Environment, Host, Vm, reserved_by_host

# reserved_by_host() key -> the host row's name for it (HostSerializer's sources)
ANNOTATIONS = {"cpu": "reserved_cpu", "mem": "reserved_mem", "disk": "reserved_disk", "vms": "live_vms"}


def vm_rows(vms) -> list[dict]:
    return list(vms.values(*VmSerializer.row_fields()))


def env_rows(envs, serializer=EnvironmentRowSerializer) -> list[dict]:
    """Environments with their VMs under "vms", in two queries."""
    rows = list(envs.values(*serializer.row_fields()))
    by_env: dict[str, list] = {row["id"]: [] for row in rows}
    for vm in vm_rows(Vm.objects.filter(env_id__in=envs.values("id")).order_by("env_id", "index")):
        by_env[vm["env_id"]].append(vm)
    for row in rows:
        row["vms"] = by_env[row["id"]]
    return rows


def env_detail(env_id: str, envs=None) -> dict | None:
    """One environment's EnvironmentSerializer row (with its SSH keys), None when it is not in `envs`."""
    found = env_rows((envs if envs is not None else Environment.objects.all()).filter(pk=env_id),
                     EnvironmentSerializer)
    return found[0] if found else None


def host_rows(hosts=None) -> list[dict]:
    """Hosts with what the controller's live VMs reserve on each (reserved_cpu/mem/disk, live_vms), in
    two queries (one grouped sum is cheaper than a correlated subquery per host)."""
    columns = [name for name in HostSerializer.row_fields() if name not in ANNOTATIONS.values()]
    rows = list((hosts if hosts is not None else Host.objects.all()).order_by("id").values(*columns))
    reserved = reserved_by_host(None if hosts is None else [row["id"] for row in rows])
    for row in rows:
        sums = reserved.get(row["id"], {})
        row.update({name: sums.get(key) or 0 for key, name in ANNOTATIONS.items()})
    return rows


def env_summaries() -> list[dict]:
    """The dashboard's environments: no VM details, their count of live VMs."""
    return list(Environment.objects.annotate(vm_count=Count("vms", filter=Q(vms__gone=False)))
                .values("id", "owner", "state", "vm_count", "expires_at", "created_at")
                .order_by("-created_at", "id"))


def fleet_status() -> dict:
    hosts = list(Host.objects.values("id", "state", "cpu_total", "mem_total", "disk_total"))
    reserved = reserved_by_host()
    out = {"hosts": len(hosts), "hosts_online": sum(h["state"] == HostState.ONLINE for h in hosts)}
    for res in ("cpu", "mem", "disk"):
        out[f"{res}_total"] = sum(h[f"{res}_total"] for h in hosts)
        # used = reserved by the controller's live VMs (what placement counts); agents' own figures
        # are on each host's "resources".
        out[f"{res}_used"] = sum(reserved.get(h["id"], {}).get(res) or 0 for h in hosts)
    envs = dict(Environment.objects.values_list("state").annotate(n=Count("id")))
    vms = dict(Vm.objects.filter(gone=False).values_list("state").annotate(n=Count("id")))
    out.update(total_envs=sum(envs.values()), total_vms=sum(vms.values()), envs_by_state=envs,
               vms_by_state=vms, controller_id=controller_id(), **exposure.report())
    return out


def fleet_images() -> list[dict]:
    """Every image any host reports, with the hosts that have it."""
    merged: dict[str, dict] = {}
    for host in Host.objects.order_by("id").values("id", "addr", "state", "images"):
        for img in host["images"] or []:
            if isinstance(img, str):
                img = {"name": img}
            if not isinstance(img, dict) or not img.get("name"):
                continue
            entry = merged.setdefault(img["name"], {
                "name": img["name"], "kind": img.get("kind", ""), "format": img.get("format", ""),
                "size": img.get("size", 0), "description": img.get("description", ""), "engines": [],
                "hosts": []})
            for engine in img.get("engines") or []:
                if engine not in entry["engines"]:
                    entry["engines"].append(engine)
            entry["hosts"].append({"id": host["id"], "addr": host["addr"], "state": host["state"],
                                   "sha256": img.get("sha256") or ""})
    return sorted(merged.values(), key=lambda e: e["name"])

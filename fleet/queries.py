"""Read models shared by the API and (later) the dashboard pages: plain dicts from a constant number
of queries, whatever the number of rows."""

from __future__ import annotations

from django.db.models import Count, Q

from .choices import HostState
from .models import Environment, Host, Vm, reserved_by_host

ENV_FIELDS = ("id", "owner", "state", "error", "lifetime", "expires_at", "created_at", "updated_at")
VM_FIELDS = ("id", "env_id", "index", "host_id", "host__addr", "image", "engine", "cpu", "mem", "disk", "ports",
             "deny_outgoing", "hostname", "state", "ip", "port_map", "publish_addr", "error", "created_at",
             "updated_at")


def vm_dict(row: dict) -> dict:
    row["env"] = row.pop("env_id")
    row["host"] = row.pop("host_id")
    row["host_addr"] = row.pop("host__addr")
    return row


def vm_rows(vms) -> list[dict]:
    return [vm_dict(r) for r in vms.values(*VM_FIELDS)]


def env_rows(envs, *, detail: bool = False) -> list[dict]:
    """Environments with their VMs, in two queries."""
    fields = (*ENV_FIELDS, "ssh_keys") if detail else ENV_FIELDS
    rows = list(envs.values(*fields))
    by_env: dict[str, list] = {row["id"]: [] for row in rows}
    for vm in vm_rows(Vm.objects.filter(env_id__in=envs.values("id")).order_by("env_id", "index")):
        by_env.get(vm["env"], []).append(vm)
    for row in rows:
        row["vms"] = by_env[row["id"]]
    return rows


def env_detail(env_id: str, envs=None) -> dict | None:
    found = env_rows((envs if envs is not None else Environment.objects.all()).filter(pk=env_id), detail=True)
    return found[0] if found else None


def host_rows(hosts=None) -> list[dict]:
    hosts = list((hosts if hosts is not None else Host.objects.all()).order_by("id"))
    reserved = reserved_by_host([h.id for h in hosts])
    return [host_dict(h, reserved.get(h.id, {})) for h in hosts]


def host_dict(h: Host, reserved: dict | None = None) -> dict:
    reserved = reserved or {}
    return {
        "id": h.id, "addr": h.addr, "host_id": h.host_id, "hostname": h.hostname, "version": h.version,
        "state": h.state, "drain": h.drain, "engines": h.engines, "engines_unavailable": h.engines_unavailable,
        "storage": h.storage, "images": h.images,
        "resources": {"cpu_total": h.cpu_total, "mem_total": h.mem_total, "disk_total": h.disk_total,
                      "cpu_used": h.cpu_used, "mem_used": h.mem_used, "disk_used": h.disk_used},
        "reserved": {"cpu": reserved.get("cpu") or 0, "mem": reserved.get("mem") or 0,
                     "disk": reserved.get("disk") or 0},
        "vm_count": h.vm_count, "vms": reserved.get("vms") or 0,
        "last_seen": h.last_seen, "error": h.error, "created_at": h.created_at,
    }


def fleet_status() -> dict:
    hosts = list(Host.objects.values("id", "state", "cpu_total", "mem_total", "disk_total", "cpu_used",
                                     "mem_used", "disk_used"))
    reserved = reserved_by_host()
    out = {"hosts": len(hosts), "hosts_online": sum(h["state"] == HostState.ONLINE for h in hosts)}
    for res, key in (("cpu", "cpu"), ("mem", "mem"), ("disk", "disk")):
        out[f"{res}_total"] = sum(h[f"{res}_total"] for h in hosts)
        # used = reserved by the controller's live VMs (what placement counts); agents' own figures
        # are on each host's "resources".
        out[f"{res}_used"] = sum(reserved.get(h["id"], {}).get(key) or 0 for h in hosts)
    envs = dict(Environment.objects.values_list("state").annotate(n=Count("id")))
    vms = dict(Vm.objects.filter(gone=False).values_list("state").annotate(n=Count("id")))
    out.update(total_envs=sum(envs.values()), total_vms=sum(vms.values()), envs_by_state=envs,
               vms_by_state=vms)
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
            entry["hosts"].append({"id": host["id"], "addr": host["addr"], "state": host["state"]})
    return sorted(merged.values(), key=lambda e: e["name"])


def live_vm_count(host_id: int) -> int:
    return Vm.objects.filter(Q(host_id=host_id) & Q(gone=False)).count()


"""Place and reserve in one transaction, so racing creates cannot overcommit a host.

PostgreSQL: the candidate host rows are locked (SELECT ... FOR UPDATE, in id order) before their
reservations are summed, so two creates placing on the same hosts run one after the other.
SQLite: the project opens every transaction IMMEDIATE, which takes the database's write lock at
BEGIN — placements are serialised the same way.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from ttproject.api.exceptions import Conflict, Unprocessable
from ttproject.tasks.runner import submit

from . import conf, scheduler
from .choices import EnvState, HostState
from .models import Environment, Host, Vm, reserved_by_host
from .validators import hostname_for, vm_id_for


def host_caps(hosts: list[Host], reserved: dict[int, dict]) -> list[scheduler.HostCap]:
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
        caps.append(scheduler.HostCap(
            id=h.id, name=f"host {h.id} ({h.addr})", online=h.state == HostState.ONLINE, drain=h.drain,
            engines=frozenset(h.engines or ()), images=images,
            cpu_free=cpu_total - (r.get("cpu") or 0),
            mem_free=h.mem_total - (r.get("mem") or 0),
            disk_free=h.disk_total - (r.get("disk") or 0),
        ))
    return caps


def create_environment(data: dict, owner: str):
    """Validated request -> (Environment, Task). Raises Conflict (duplicate) or Unprocessable (no room)."""
    reqs = [scheduler.VmReq(v["image"], v["engine"], v["cpu"], v["mem"], v["disk"]) for v in data["vms"]]
    lifetime = data["lifetime"]
    try:
        with transaction.atomic():
            if Environment.objects.filter(pk=data["id"]).exists():
                raise Conflict(f"environment {data['id']!r} already exists")
            hosts = list(Host.objects.select_for_update().order_by("id"))
            caps = host_caps(hosts, reserved_by_host([h.id for h in hosts]))
            try:
                chosen = scheduler.place(caps, reqs, conf.PLACEMENT)
            except scheduler.NoFit as exc:
                raise Unprocessable(str(exc)) from exc
            now = timezone.now()
            env = Environment.objects.create(
                id=data["id"], owner=owner, ssh_keys=data["ssh_keys"], lifetime=lifetime,
                expires_at=now + timedelta(seconds=lifetime) if lifetime else None,
                state=EnvState.CREATING, created_at=now,
            )
            Vm.objects.bulk_create([
                Vm(id=vm_id_for(env.id, i), env=env, index=i, host_id=host_id, image=v["image"], engine=v["engine"],
                   cpu=v["cpu"], mem=v["mem"], disk=v["disk"], ports=v["ports"],
                   deny_outgoing=v["deny_outgoing"], hostname=hostname_for(vm_id_for(env.id, i)))
                for i, (v, host_id) in enumerate(zip(data["vms"], chosen, strict=True))
            ])
            task = submit("fleet.env_create", target=env.id, owner=owner, params={"env": env.id})
    except IntegrityError as exc:
        raise Conflict(f"environment {data['id']!r} already exists") from exc
    return env, task

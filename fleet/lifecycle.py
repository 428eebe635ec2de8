"""What can happen to an environment: create, stop, start, delete (and retry a delete), expire.
Extending, expiry warnings and the stop-at-expiry policy are fleet.deadlines'.

The one place the API, the admin and the fleet loop go through. A request claims the environment for
its operation (fleet.transitions: a conditional UPDATE only one caller wins) and submits the job that
carries it out (fleet.jobs), in one transaction: when the claim or a check fails, nothing is left
behind. Failures are domain errors (ttproject.errors); the API layer answers them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ttproject.errors import Conflict, Refused
from ttproject.tasks.models import Task
from ttproject.tasks.runner import submit

from . import capacity, conf, placement, quotas
from .choices import EnvState, OnExpiry
from .models import Environment, Vm
from .transitions import OPERATIONS, claim, operation_under_way
from .validators import hostname_for, vm_id_for

log = logging.getLogger(__name__)


def _exists(env_id: str) -> Conflict:
    return Conflict(f"environment {env_id!r} already exists")


def create_env(data: dict, owner: str, *, within_quota: bool = False) -> tuple[Environment, Task]:
    """A validated create request -> (Environment, Task). Places and reserves in one transaction with
    the hosts locked, so racing creates cannot overcommit a host (nor, `within_quota`, the owner's quota:
    fleet.quotas). Raises Conflict (the id is taken) or Refused (no host can take a VM, the reason per
    host; or over the quota)."""
    reqs = [placement.VmReq(v["image"], v["engine"], v["cpu"], v["mem"], v["disk"]) for v in data["vms"]]
    lifetime = data["lifetime"]
    try:
        with transaction.atomic():
            if Environment.objects.filter(pk=data["id"]).exists():
                raise _exists(data["id"])
            caps = capacity.locked_caps()
            if within_quota:
                quotas.check(owner, reqs)
            try:
                chosen = placement.place(caps, reqs, conf.PLACEMENT)
            except placement.NoFit as exc:
                raise Refused(str(exc)) from exc
            now = timezone.now()
            create = OPERATIONS["create"]
            task = submit(create.job, target=data["id"], owner=owner, params={"env": data["id"]})
            env = Environment.objects.create(
                id=data["id"], owner=owner, ssh_keys=data["ssh_keys"], lifetime=lifetime,
                isolated_network=data.get("isolated_network", True), on_expiry=data.get("on_expiry", "delete"),
                expires_at=now + timedelta(seconds=lifetime) if lifetime else None,
                state=create.via, operation=task, created_at=now,
            )
            Vm.objects.bulk_create([
                Vm(id=vm_id_for(env.id, i), env=env, index=i, host_id=host_id, image=v["image"], engine=v["engine"],
                   cpu=v["cpu"], mem=v["mem"], disk=v["disk"], ports=v["ports"],
                   deny_outgoing=v["deny_outgoing"], hostname=hostname_for(vm_id_for(env.id, i)))
                for i, (v, host_id) in enumerate(zip(data["vms"], chosen, strict=True))
            ])
    except IntegrityError as exc:
        raise _exists(data["id"]) from exc
    return env, task


def _refused_claim(env: Environment, action: str) -> Conflict:
    return Conflict(f"environment {env.id} is {env.state}; cannot {action} it now")


def stop_env(env: Environment) -> Task:
    """Stop every VM (they keep their disks). Conflict unless the environment is active or stopped."""
    task = claim(env, "stop")
    if task is None:
        raise _refused_claim(env, "stop")
    return task


def start_env(env: Environment) -> Task:
    """Start every VM. Conflict unless active or stopped; Refused when stopped VMs no longer fit."""
    with transaction.atomic():
        task = claim(env, "start")
        if task is None:
            raise _refused_claim(env, "start")
        if short := capacity.shortfalls_to_start(env):
            # raising rolls the claim back: the environment stays as it was, no task is left
            raise Refused(f"cannot start environment {env.id}: its VMs no longer fit on their hosts — "
                          + "; ".join(short))
    return task


def delete_env(env: Environment, reason: str) -> Task | None:
    """Claim the environment for deletion and submit the delete job (None if it is being deleted)."""
    return claim(env, "delete", params={"reason": reason})


def request_delete(env: Environment, reason: str = "requested") -> Task | None:
    """Delete, idempotently: a new delete, else the delete under way, else (the last one ended without
    finishing) a retry. None when the environment is gone meanwhile."""
    return delete_env(env, reason) or operation_under_way(env) or retry_delete(env)


def retry_delete(env: Environment) -> Task | None:
    """Submit the delete again for a deleting or failed environment (None for other states)."""
    return claim(env, "retry_delete", params={"retry": True})


def expire_envs() -> list[str]:
    """Delete every environment whose deadline has passed (`on_expiry: stop`: whose second deadline has,
    fleet.deadlines); the ids of those claimed now."""
    expired = []
    now = timezone.now()
    due = Q(expires_at__lte=now) & (Q(on_expiry=OnExpiry.DELETE) | Q(delete_at__lte=now))
    for env in Environment.objects.filter(due).exclude(state=EnvState.DELETING):
        # conditional on the deadline too: an extension made meanwhile wins
        if claim(env, "delete", params={"reason": "expired"}, where=due):
            log.info("environment %s expired (deadline %s): deleting", env.id, env.expires_at)
            expired.append(env.id)
    return expired

"""Environment lifecycle jobs (django-q2 via the foundation's runner).

Every job is safe to run twice and to resume after a crash: it works from the rows' states
(VMs still `pending`/`creating` are asked of their agent again — the agent answers 200 for the same
id with the same parameters), it moves the environment only through fleet.transitions (conditional
UPDATEs), and create, stop and start give up as soon as their task is no longer the environment's
operation (a delete took over).
Agents are called in parallel, one thread per VM; each thread closes its own DB connection.
"""

from __future__ import annotations

import logging
import time

from django.db import transaction

from ttproject.tasks.registry import job
from ttproject.tasks.runner import TaskFailed

from . import conf
from .agent_client import AgentClient, AgentError, parallel
from .choices import EnvState, VmState
from .models import Environment, Vm, derive_env_state
from .readiness import await_ready
from .teardown import destroy_vm, finish_delete
from .transitions import finish, is_current, wait_for_superseded

log = logging.getLogger(__name__)
CANCELLED = "cancelled: the environment is being deleted"


def _own_env(ctx) -> Environment | dict:
    """The job's environment, or the job's result when this task is no longer its operation."""
    env = Environment.objects.filter(pk=ctx.params["env"]).first()
    if env is None or env.operation_id != ctx.id:
        return {"env": ctx.params["env"], "skipped": f"environment is {env.state if env else 'gone'}"}
    return env


# ------------------------------------------------------------------------------------------- create


def _mark_creating(vms: list[Vm]) -> set[str]:
    """The VMs still to be made, `creating`, in one transaction (written by each VM's thread, eight rows and
    their events waited for SQLite's write lock in turn, up to 0.1 s before the first agent was called).
    Returns the ids that were `pending`: never asked of an agent."""
    fresh = {vm.id for vm in vms if vm.state == VmState.PENDING}
    with transaction.atomic():
        for vm in vms:
            if vm.state not in (VmState.RUNNING, VmState.STOPPED):
                vm.write(state=VmState.CREATING)
    return fresh


def _create_one(env: Environment, vm: Vm, ctx, fresh: set[str]) -> str | None:
    """Create one VM (marked `creating`); None on success, else the error."""
    if vm.state in (VmState.RUNNING, VmState.STOPPED):
        return None  # done by an earlier run of this job
    if not is_current(env.id, ctx.id):
        if vm.id in fresh:  # a delete took over before its agent was asked: nothing to undo anywhere
            vm.write(gone=True)
        return CANCELLED
    started = time.monotonic()
    try:
        with AgentClient.for_host(vm.host) as agent:
            data = agent.create_vm(vm.agent_request(env.ssh_keys, network=env.id if env.isolated_network else ""))
    except AgentError as exc:
        # A 4xx other than 409 means the agent refused before making anything.
        made_nothing = exc.status is not None and 400 <= exc.status < 500 and exc.status != 409
        vm.write(state=VmState.FAILED, error=str(exc), doomed=True, gone=made_nothing)
        ctx.log(f"VM {vm.id} on {vm.host.addr} failed: {exc}")
        return str(exc)
    vm.apply_agent(data)
    vm.write(state=vm.state if vm.state != VmState.CREATING else VmState.RUNNING, error=vm.error, **vm.reported())
    ctx.log(f"VM {vm.id} on {vm.host.addr}: {vm.state} {vm.port_map} ({time.monotonic() - started:.2f} s)")
    if vm.state == VmState.FAILED:
        vm.write(doomed=True)
        return vm.error
    if not is_current(env.id, ctx.id):  # deleted while we were creating: undo at once
        destroy_vm(vm)
        return CANCELLED
    return None


@job("fleet.env_create")
def env_create(ctx):
    env = _own_env(ctx)
    if not isinstance(env, Environment):
        return env
    vms = list(env.vms.select_related("host").filter(gone=False).order_by("index"))
    ctx.log(f"creating {len(vms)} VM(s) on {len({vm.host_id for vm in vms})} host(s)")
    fresh = _mark_creating(vms)
    errors = parallel(lambda vm: _create_one(env, vm, ctx, fresh), vms)
    failed = {vm.id: err for vm, err in zip(vms, errors, strict=True) if err}
    if not failed:  # created: active once every VM answers SSH / has its ports published
        failed = await_ready(vms, lambda: is_current(env.id, ctx.id), ctx.log)
    if not is_current(env.id, ctx.id):
        ctx.log("the environment was deleted while being created; the delete job removes the rest")
        return {"env": env.id, "cancelled": True}
    if not failed:
        states = list(env.vms.values_list("state", flat=True))
        finish(env, "create", derive_env_state(states, EnvState.ACTIVE))
        return {"env": env.id, "state": env.state, "vms": [vm.id for vm in vms]}
    # All or nothing: take back every VM made, keep each VM's own error.
    first = next(iter(failed))
    summary = "; ".join(f"{vm_id}: {err}" for vm_id, err in failed.items())
    ctx.log(f"rolling back {len(vms)} VM(s): {summary}")
    Vm.objects.filter(env=env).update(doomed=True)
    for vm in vms:
        vm.write(error=failed.get(vm.id) or f"rolled back because VM {first} failed")
    pending = [vm for vm in vms if not vm.gone]
    confirmed = parallel(destroy_vm, pending)
    left = [vm.id for vm, ok in zip(pending, confirmed, strict=True) if not ok]
    if left:
        ctx.log(f"not confirmed yet (the fleet loop keeps retrying): {', '.join(left)}")
    finish(env, "create", EnvState.FAILED, error=summary)
    raise TaskFailed(f"environment {env.id} failed: {summary}",
                     result={"env": env.id, "state": EnvState.FAILED, "errors": failed, "pending_delete": left})


# ------------------------------------------------------------------------------------------- delete


@job("fleet.env_delete")
def env_delete(ctx):
    env_id = ctx.params["env"]
    env = Environment.objects.filter(pk=env_id).first()
    if env is None:
        return {"env": env_id, "deleted": True}
    # Never wait in a worker for a create this delete superseded (an agent may hang for the create timeout):
    # it sees the delete before its next VM and undoes the one it is making; those VMs are left to it and,
    # should it die, to the fleet loop's retried deletes.
    create_running = not wait_for_superseded(ctx.params, 0)
    Vm.objects.filter(env_id=env_id).update(doomed=True)
    deadline = time.monotonic() + conf.DELETE_RETRY
    while True:
        left = Vm.objects.select_related("host").filter(env_id=env_id, gone=False)
        if create_running:
            left = left.exclude(state=VmState.CREATING)
        pending = list(left)
        if not pending:
            break
        done = parallel(destroy_vm, pending)
        ctx.log(f"deleted {sum(done)} of {len(pending)} VM(s)")
        if all(done):
            break
        if time.monotonic() > deadline:
            left = [vm.id for vm, ok in zip(pending, done, strict=True) if not ok]
            finish(env, "delete", EnvState.DELETING, error=f"waiting for agents to confirm: {', '.join(left)}")
            raise TaskFailed(f"{len(left)} VM(s) not confirmed deleted yet; the controller keeps retrying",
                             result={"env": env_id, "pending_delete": left})
        time.sleep(1)
    if finish_delete(env_id):
        return {"env": env_id, "deleted": True}
    making = list(Vm.objects.filter(env_id=env_id, gone=False).values_list("pk", flat=True))
    ctx.log(f"left to the create under way, then to the fleet loop: {', '.join(making)}")
    finish(env, "delete", EnvState.DELETING, error=f"waiting for the create under way to undo: {', '.join(making)}")
    return {"env": env_id, "deleted": False, "pending_delete": making}


# --------------------------------------------------------------------------------------- stop/start


def _power(ctx, action: str):
    env = _own_env(ctx)
    if not isinstance(env, Environment):
        return env
    wait_for_superseded(ctx.params, conf.AGENT_CREATE_TIMEOUT)
    vms = list(env.vms.select_related("host").filter(gone=False))

    def one(vm: Vm) -> str | None:
        try:
            with AgentClient.for_host(vm.host) as agent:
                data = agent.stop_vm(vm.id) if action == "stop" else agent.start_vm(vm.id)
        except AgentError as exc:
            vm.write(error=str(exc))
            return str(exc)
        vm.apply_agent(data)
        vm.write(state=vm.state, error="" if vm.state != VmState.FAILED else vm.error, **vm.reported())
        return None

    errors = parallel(one, vms)
    failed = {vm.id: err for vm, err in zip(vms, errors, strict=True) if err}
    not_ready = {}
    if action == "start" and not failed:
        not_ready = await_ready(vms, lambda: is_current(env.id, ctx.id), ctx.log)
        failed.update(not_ready)
    states = list(env.vms.filter(gone=False).values_list("state", flat=True))
    new = EnvState.FAILED if not_ready else derive_env_state(states, EnvState.ACTIVE)
    finish(env, action, new, error="; ".join(f"{k}: {v}" for k, v in failed.items()))
    if failed:
        raise TaskFailed(f"{action} failed for {len(failed)} VM(s)", result={"env": env.id, "errors": failed})
    return {"env": env.id, "state": new}


@job("fleet.env_stop")
def env_stop(ctx):
    return _power(ctx, "stop")


@job("fleet.env_start")
def env_start(ctx):
    return _power(ctx, "start")

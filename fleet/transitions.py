"""An environment's state machine, in one table: each operation, the states it may start from, the state
the environment holds while its job runs, and that job. The API, the admin, the jobs and the fleet loop
move environments only through `claim`, `finish` and `settle`, each one conditional UPDATE.

`Environment.operation` is the task of its latest operation, set by the claim. The environment is busy
while that task has not ended: the one answer to "is a job working on this environment?" (the fleet
loop leaves busy environments to their job). A claim may supersede an operation under way (a delete
during a create); the new job first waits for the superseded task to end (`wait_for_superseded`), so
the jobs on one environment run one after another, as Pulp runs the tasks on one resource.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ttproject.tasks.models import Task, TaskStatus
from ttproject.tasks.runner import submit

from . import events
from .choices import EnvState
from .models import Environment, derive_env_state


@dataclass(frozen=True)
class Operation:
    job: str  # the job carrying it out (fleet.jobs)
    allowed: tuple[str, ...]  # the states the environment may be in to start it
    via: str  # the environment's state while the job runs


# No operation is under way: stop and start may begin, and the heartbeat may move the environment by
# what its agents report.
SETTLED = (EnvState.ACTIVE, EnvState.STOPPED)
_ANY_BUT_DELETING = tuple(s for s in EnvState.values if s != EnvState.DELETING)

OPERATIONS = {
    "create": Operation("fleet.env_create", (), EnvState.CREATING),  # a new row, inserted in that state
    "stop": Operation("fleet.env_stop", SETTLED, EnvState.STOPPING),
    "start": Operation("fleet.env_start", SETTLED, EnvState.STARTING),
    "delete": Operation("fleet.env_delete", _ANY_BUT_DELETING, EnvState.DELETING),
    "retry_delete": Operation("fleet.env_delete", (EnvState.DELETING, EnvState.FAILED), EnvState.DELETING),
}
# A job ends in the state its VMs give (derive_env_state), FAILED, or (delete) with the rows dropped.

ACTIVE_TASK = (TaskStatus.PENDING, TaskStatus.RUNNING)


def claim(env: Environment, name: str, *, params: dict | None = None, where: Q | None = None) -> Task | None:
    """Move the environment into operation `name`'s state and submit its job, in one transaction (the
    caller's, when it has one). None when the environment is not in an allowed state (or fails `where`):
    someone else claimed it first."""
    op = OPERATIONS[name]
    with transaction.atomic():
        rows = Environment.objects.filter(pk=env.pk, state__in=op.allowed)
        if where is not None:
            rows = rows.filter(where)
        if not rows.update(state=op.via, updated_at=timezone.now()):
            return None
        # The row is ours until the transaction ends (locked by the UPDATE, or SQLite's write lock).
        superseded = Environment.objects.filter(pk=env.pk).values_list("operation_id", flat=True).first()
        task = submit(op.job, target=env.pk, owner=env.owner,
                      params={"env": env.pk, "superseded": superseded, **(params or {})})
        Environment.objects.filter(pk=env.pk).update(operation=task)
        events.env_state(env, op.via, operation=name, task=task.pk)
    env.state, env.operation = op.via, task
    return task


def finish(env: Environment, name: str, state: str, **fields) -> bool:
    """End operation `name`: from its state to `state` (False when another operation took over)."""
    return env.set_state(state, only_from=[OPERATIONS[name].via], **fields)


def settle(env: Environment, vm_states: list[str]) -> bool:
    """The heartbeat's move: an environment no operation owns follows what its VMs report."""
    if env.state not in SETTLED:
        return False
    return env.set_state(derive_env_state(vm_states, env.state), only_from=SETTLED)


def is_current(env_id: str, task_id: str) -> bool:
    """Whether the task is still the environment's operation (not superseded, the environment not gone)."""
    return Environment.objects.filter(pk=env_id, operation_id=task_id).exists()


def busy_env_ids() -> set[str]:
    """Environments whose latest operation has not ended."""
    return set(Environment.objects.filter(operation__status__in=ACTIVE_TASK).values_list("pk", flat=True))


def operation_under_way(env: Environment) -> Task | None:
    if env.operation_id is None:
        return None
    return Task.objects.filter(pk=env.operation_id, status__in=ACTIVE_TASK).first()


def wait_for_superseded(params: dict, timeout: float) -> bool:
    """Wait (at most `timeout` seconds) until the task this one superseded has ended; True if it has."""
    superseded = params.get("superseded")
    deadline = time.monotonic() + timeout
    while superseded and Task.objects.filter(pk=superseded, status__in=ACTIVE_TASK).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True

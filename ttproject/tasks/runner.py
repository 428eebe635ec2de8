"""Run Tasks: submit one, let a django-q2 worker execute it, record every change.

State moves only by conditional UPDATE (Pulp's pattern): `pending -> running` is a claim that only one
worker wins, and `running -> completed|failed` happens once. A job that is handed out twice therefore
runs once; a job found `running` after its worker died is handed back by `requeue_orphans()`: on this
machine when its pid is gone, on any machine when its Worker heartbeat (ttproject.tasks.workers) went stale.
A worker that was given up on cannot finish or log on a task handed to another (the UPDATEs name it).
"""

import logging
import socket
import threading
import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from ttproject.procutil import pid_alive as _pid_alive

from .models import Task, TaskStatus
from .notify import task_changed
from .registry import JOBS
from .workers import live_workers, worker_id

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a task whose worker died this often is failed instead of handed out again
NOT_TAKEN = "no worker has taken this task"
__all__ = ["worker_id"]  # re-exported: where a task's claimed_by comes from


class TaskFailed(Exception):
    """Raised by a job to fail its task with a clear message (and optional result/stderr)."""

    def __init__(self, message: str, *, result: Any = None, stderr: str | None = None,
                 exit_code: int | None = None):
        super().__init__(message)
        self.result, self.stderr, self.exit_code = result, stderr, exit_code


def submit(action: str, *, target: str = "", owner: str = "", params: dict | None = None) -> Task:
    """Save a pending Task and hand it to the worker once the surrounding transaction commits."""
    if action not in JOBS:
        raise KeyError(f"no job registered for action {action!r}")
    task = Task.objects.create(action=action, target=target, owner=owner, params=params or {})
    transaction.on_commit(lambda: enqueue(task.id))
    return task


def submit_here(action: str, *, target: str = "", owner: str = "", params: dict | None = None) -> Task:
    """Like submit(), for a role without a worker (the agent): the job runs in a thread of this process
    once the surrounding transaction commits, with the same claim, progress and end as a worker's."""
    if action not in JOBS:
        raise KeyError(f"no job registered for action {action!r}")
    task = Task.objects.create(action=action, target=target, owner=owner, params=params or {})
    transaction.on_commit(lambda: threading.Thread(target=_execute_here, args=(task.id,), daemon=True,
                                                   name=f"task-{task.id[:8]}").start())
    return task


def _execute_here(task_id: str):
    from django.db import connection

    try:
        execute(task_id)
    finally:
        connection.close()  # this thread's connection only


def enqueue(task_id: str):
    from django_q.tasks import async_task

    async_task("ttproject.tasks.runner.execute", task_id, task_name=f"task-{task_id}", group="ttstack")


class TaskContext:
    """What a job gets: its Task row and ways to report progress on it."""

    def __init__(self, task: Task):
        self.task = task
        self.id = task.id
        self.params = task.params

    def _update(self, **fields) -> bool:
        fields.setdefault("updated_at", timezone.now())
        changed = Task.objects.filter(pk=self.id, status=TaskStatus.RUNNING, claimed_by=worker_id()).update(
            version=F("version") + 1, **fields
        )
        if changed:
            task_changed(self.id)
        return bool(changed)

    def log(self, line: str):
        line = line.rstrip("\n")
        self._update(logs=Concat(F("logs"), Value(line + "\n")))

    def stderr(self, text: str):
        if text:
            from django.db.models.functions import Coalesce

            self._update(stderr=Concat(Coalesce(F("stderr"), Value("")), Value(text)))

    def set(self, **fields):
        """Record command / exit_code / result while running."""
        self._update(**fields)

    def refresh(self) -> Task:
        self.task.refresh_from_db()
        return self.task


def _finish(task_id: str, status: str, *, by: str | None = None, **fields) -> bool:
    """End a running task (`by`: only while that worker holds it)."""
    now = timezone.now()
    rows = Task.objects.filter(pk=task_id, status=TaskStatus.RUNNING)
    if by is not None:
        rows = rows.filter(claimed_by=by)
    done = rows.update(
        status=status, finished_at=now, updated_at=now, version=F("version") + 1, **fields
    )
    if done:
        task_changed(task_id)
    return bool(done)


def claim(task_id: str) -> bool:
    now = timezone.now()
    claimed = Task.objects.filter(pk=task_id, status=TaskStatus.PENDING).update(
        status=TaskStatus.RUNNING, started_at=now, updated_at=now, claimed_by=worker_id(),
        version=F("version") + 1, attempts=F("attempts") + 1,
    )
    if claimed:
        task_changed(task_id)
    return bool(claimed)


def execute(task_id: str) -> str:
    """The django-q2 entry point. Safe to call twice: the second call finds nothing to claim."""
    if not claim(task_id):
        return "already claimed"
    me = worker_id()
    task = Task.objects.get(pk=task_id)
    fn = JOBS.get(task.action)
    if fn is None:
        _finish(task_id, TaskStatus.FAILED, by=me, error=f"no job registered for action {task.action!r}")
        return "failed"
    try:
        result = fn(TaskContext(task))
    except TaskFailed as exc:
        extra = {"stderr": exc.stderr} if exc.stderr is not None else {}
        if exc.exit_code is not None:
            extra["exit_code"] = exc.exit_code
        _finish(task_id, TaskStatus.FAILED, by=me, error=str(exc), result=exc.result, **extra)
        return "failed"
    except Exception as exc:  # the job's bug or an unexpected failure: the task says so
        log.exception("task %s (%s) failed", task_id, task.action)
        _finish(task_id, TaskStatus.FAILED, by=me, error=f"{type(exc).__name__}: {exc}",
                stderr=traceback.format_exc())
        return "failed"
    _finish(task_id, TaskStatus.COMPLETED, by=me, result=result)
    return "completed"


def requeue_orphans() -> list[str]:
    """Hand back tasks whose worker died while running them (crash, SIGKILL, restart, a machine gone): a
    worker of this machine whose pid is gone, or a worker anywhere whose heartbeat is older than
    TTSTACK_WORKER_TIMEOUT. Jobs are written to be safe to run again, so a half-done job is finished or
    rolled back by its second run. Tasks pending longer than TTSTACK_TASK_PENDING_TIMEOUT are reported (in
    their log and this process's), and given to the broker again when it lost them.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WORKER_TIMEOUT)
    alive, host = live_workers(), socket.gethostname()
    requeued = []
    for task in Task.objects.filter(status=TaskStatus.RUNNING):
        if not _worker_lost(task, host, alive, cutoff):
            continue
        if task.attempts >= MAX_ATTEMPTS:
            _finish(task.pk, TaskStatus.FAILED,
                    error=f"its worker died {task.attempts} times (killed for running past the task timeout?)")
            continue
        if Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, claimed_by=task.claimed_by).update(
            status=TaskStatus.PENDING, claimed_by="", version=F("version") + 1, updated_at=timezone.now()
        ):
            _note(task.pk, f"worker {task.claimed_by} lost; task handed to another worker")
            log.warning("task %s (%s): worker %s lost, handed back", task.pk, task.action, task.claimed_by)
            enqueue(task.pk)
            requeued.append(task.pk)
    for task_id in Task.objects.filter(status=TaskStatus.PENDING).values_list("pk", flat=True):
        if task_id not in requeued and not _queued(task_id):
            enqueue(task_id)
            requeued.append(task_id)
    _report_waiting(now)
    return requeued


def _worker_lost(task: Task, host: str, alive: set[str], cutoff) -> bool:
    hostname, _, pid = task.claimed_by.rpartition(":")
    if hostname == host and pid.isdigit():
        return not _pid_alive(int(pid))
    return task.claimed_by not in alive and (task.started_at or task.updated_at) < cutoff


def _note(task_id: str, line: str):
    Task.objects.filter(pk=task_id).update(logs=Concat(F("logs"), Value(line + "\n")), version=F("version") + 1)
    task_changed(task_id)


def _report_waiting(now):
    """Say so, once per task, when a task has waited longer than TTSTACK_TASK_PENDING_TIMEOUT."""
    waited = settings.TASK_PENDING_TIMEOUT
    for task in Task.objects.filter(status=TaskStatus.PENDING, created_at__lt=now - timedelta(seconds=waited)
                                    ).exclude(logs__contains=NOT_TAKEN):
        why = (f"{NOT_TAKEN} for {waited:g} s: are the workers up, on this queue, and do all processes share "
               "one TTSTACK_SECRET_KEY?")
        log.warning("task %s (%s): %s", task.pk, task.action, why)
        _note(task.pk, why)


def _queued(task_id: str) -> bool:
    """Whether the broker still holds a message for this task (only knowable for the ORM broker)."""
    from django.conf import settings

    if "orm" not in settings.Q_CLUSTER:
        return True  # Redis broker: messages survive restarts there
    from django_q.models import OrmQ

    return any(task_id in str(item.task.get("args", ())) for item in OrmQ.objects.all())

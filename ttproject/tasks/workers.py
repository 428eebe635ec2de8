"""Worker liveness and the deployment's signing key.

- Every job-running process keeps a Worker row fresh (Pulp's heartbeat): a thread started when django-q
  spawns the process, or at its first task, writes `last_heartbeat` every third of TTSTACK_WORKER_TIMEOUT.
  ttproject.tasks.runner.requeue_orphans hands back the tasks of a process whose row went stale.
- django-q2 signs its queue messages with the secret key: processes started with different keys (each
  generated its own into its own data dir) cannot read each other's messages. The first process recorded
  a fingerprint of its key in the database; `check_signing_key` refuses a process whose key differs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from .models import SigningKey, Worker

log = logging.getLogger(__name__)
_beating_in: int | None = None  # pid of the process whose heartbeat thread runs (a fork starts its own)


def worker_id() -> str:
    """host:pid of the process running the job. Read at claim time: django-q forks its workers after
    this module is imported, so a value taken at import would name the parent, which outlives them."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(name: str | None = None):
    Worker.objects.update_or_create(name=name or worker_id(), defaults={"last_heartbeat": timezone.now()})


def keep_alive(**_signal):
    """Start, once per process, the thread that keeps this process's Worker row fresh (its first beat now)."""
    global _beating_in
    if _beating_in == os.getpid():
        return
    _beating_in = os.getpid()
    name = worker_id()
    beat(name)
    threading.Thread(target=_beat_forever, args=(name,), name="task-worker-heartbeat", daemon=True).start()


def _beat_forever(name: str):
    while True:
        time.sleep(settings.WORKER_TIMEOUT / 3)
        try:
            close_old_connections()
            beat(name)
        except Exception as exc:  # the database briefly away: the next beat tries again
            log.warning("worker heartbeat of %s failed: %s", name, exc)
        finally:
            connections.close_all()  # this thread's: it holds no connection between beats


def live_workers() -> set[str]:
    """Names of the processes heard from within TTSTACK_WORKER_TIMEOUT; rows long dead are dropped."""
    now = timezone.now()
    Worker.objects.filter(last_heartbeat__lt=now - timedelta(seconds=10 * settings.WORKER_TIMEOUT)).delete()
    cutoff = now - timedelta(seconds=settings.WORKER_TIMEOUT)
    return set(Worker.objects.filter(last_heartbeat__gte=cutoff).values_list("name", flat=True))


def queue_warnings() -> list[str]:
    """What an operator must be told about the job queue (GET /api/status `warnings`): tasks pending while no
    worker is alive (no worker process at all runs the report of requeue_orphans), or pending so long that
    the live workers evidently do not take them."""
    from django.db.models import Count, Q

    from .models import Task, TaskStatus

    now = timezone.now()
    old = Q(created_at__lt=now - timedelta(seconds=settings.TASK_PENDING_TIMEOUT))
    tally = Task.objects.filter(status=TaskStatus.PENDING).aggregate(count=Count("pk"), waiting=Count("pk", filter=old))
    count, waiting = tally["count"], tally["waiting"]
    if not count:
        return []
    if not Worker.objects.filter(last_heartbeat__gte=now - timedelta(seconds=settings.WORKER_TIMEOUT)).exists():
        return [f"{count} task(s) pending and no job worker heard from within TTSTACK_WORKER_TIMEOUT "
                f"({settings.WORKER_TIMEOUT:g} s): nothing runs them until one starts (`ttstack worker --role "
                f"ROLE`; the server commands start their own)"]
    if waiting:
        return [f"{waiting} task(s) pending for more than TTSTACK_TASK_PENDING_TIMEOUT "
                f"({settings.TASK_PENDING_TIMEOUT:g} s) although a worker is alive: no worker on their queue, "
                f"or one started with another TTSTACK_SECRET_KEY?"]
    return []


def _fingerprint() -> str:
    return hmac.new(settings.SECRET_KEY.encode(), b"ttstack queue messages", hashlib.sha256).hexdigest()


def check_signing_key() -> str | None:
    """None when this process signs like the others on its database (recording the key's fingerprint if it is
    the first); else why it cannot work with them, naming the setting that fixes it."""
    row, _made = SigningKey.objects.get_or_create(name="queue", defaults={"fingerprint": _fingerprint()})
    if hmac.compare_digest(row.fingerprint, _fingerprint()):
        return None
    return ("this process's secret key differs from the one the other processes on this database use "
            f"(recorded {row.recorded_at:%Y-%m-%d %H:%M} UTC): they could not read each other's job messages. "
            "Give every controller and worker process the same TTSTACK_SECRET_KEY (with a data dir per "
            "process, each generated its own). Changed on purpose everywhere: `ttstack manage controller "
            "forget_signing_key`, then start the processes again.")

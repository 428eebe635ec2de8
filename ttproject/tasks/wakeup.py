"""The ORM broker, woken at once when a task is queued on this machine.

django-q2's ORM broker finds new work by polling: its pusher sleeps `Q_CLUSTER["poll"]` (0.1 s) after
every empty look at the queue, so a task waited 0.05 s on average before a worker took it, about a third
of the controller's own share of an environment create (bench/fleet_faults.py, figure 4). Here the pusher
of each cluster waits on a datagram socket of its own, DATA_DIR/wake/<pid>, instead of sleeping, and
whoever queues a task sends each socket there a byte once the task's row is committed.

The poll stays the truth: a wake-up that never comes (a web process on another machine or with another
data dir, a socket path too long for AF_UNIX) costs only the old wait, and one on an empty queue costs one
query. DATA_DIR is 0700, so only the deployment's own user can reach the sockets. The Redis broker needs
none of this: it blocks on the list itself.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

log = logging.getLogger(__name__)

SOCKET_DIR = "wake"


def socket_dir() -> Path:
    return Path(settings.DATA_DIR) / SOCKET_DIR


def wake_all() -> int:
    """One byte to every waiting pusher on this machine; the number reached. A socket nobody listens on
    any more (its process died) is removed."""
    try:
        paths = list(socket_dir().iterdir())
    except FileNotFoundError:
        return 0
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for path in paths:
            try:
                sender.sendto(b"!", str(path))
                reached += 1
            except BlockingIOError:
                reached += 1  # its buffer is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.debug("waking %s: %s", path, exc)
    return reached


class Waiter:
    """The pusher's end: a socket bound at DATA_DIR/wake/<pid> (its `sock` None when it cannot be made).
    A pusher that stops leaves its socket file behind (django-q2 gives it no hook to clean up, and a killed
    one could not anyway); the next wake_all() finds nobody reading it and removes it."""

    def __init__(self):
        self.path = socket_dir() / str(os.getpid())
        self.sock: socket.socket | None = None
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            self.path.unlink(missing_ok=True)  # a pid reused after a crash
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self.path))
            self.sock = sock
        except OSError as exc:
            log.info("tasks are found by polling every %s s only: %s: %s", Conf.POLL, self.path, exc)

    def wait(self, timeout: float) -> None:
        """Until a wake-up or `timeout`; the wake-ups that piled up meanwhile are all taken."""
        if self.sock is None:
            time.sleep(timeout)
            return
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(64)
        except TimeoutError:
            return
        self.sock.setblocking(False)
        try:
            while self.sock.recv(64):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.path.unlink(missing_ok=True)
            self.sock = None


class WakeableORM(ORM):
    """django-q2's ORM broker (Q_CLUSTER["broker_class"]) whose pusher is woken by enqueue()."""

    _waiter: Waiter | None = None

    def enqueue(self, task):
        pk = super().enqueue(task)
        transaction.on_commit(wake_all, using=Conf.ORM)  # at once outside a transaction
        return pk

    def dequeue(self):
        # ORM.dequeue, with the wait on the socket instead of its sleep: the queued rows not locked by
        # another cluster, each claimed by moving its lock forward (a row another cluster claimed first
        # no longer matches its old lock).
        queue = self.get_connection()
        claimed = [(task.pk, task.payload)
                   for task in queue.filter(key=self.list_key, lock__lt=timezone.now())[: Conf.BULK]
                   if queue.filter(id=task.id, lock=task.lock).update(lock=self.timeout(task))]
        if claimed:
            return claimed
        if self._waiter is None:
            self._waiter = Waiter()
        self._waiter.wait(Conf.POLL)
        return None

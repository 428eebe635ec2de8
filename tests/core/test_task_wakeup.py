"""The ORM broker's pusher is woken by an enqueue on this machine instead of waiting out its poll
(ttproject/tasks/wakeup.py): real sockets in the data dir, the real queue table."""

import socket
import threading

import pytest
from django.db import transaction
from django_q.conf import Conf

from ttproject.tasks import wakeup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LONG_POLL = 60.0  # a pusher that is not woken waits this long: far beyond the joins below


@pytest.fixture
def data_dir(settings, tmp_path, monkeypatch):
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(Conf, "POLL", LONG_POLL)
    return tmp_path


def _pusher(found: list) -> threading.Thread:
    """A pusher's loop in a thread: dequeue until it gets a task (the first call waits on the socket)."""
    def run():
        from django.db import connection

        broker = wakeup.WakeableORM(list_key="wakeup-test")
        try:
            for _ in range(3):
                tasks = broker.dequeue()
                if tasks:
                    found.extend(payload for _pk, payload in tasks)
                    return
        finally:
            if broker._waiter is not None:
                broker._waiter.close()
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_socket(data_dir, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not any((data_dir / wakeup.SOCKET_DIR).glob("*")):
        assert time.monotonic() < deadline, "the pusher made no socket"
        time.sleep(0.01)


def test_a_waiting_pusher_takes_a_new_task_at_once_not_after_its_poll(data_dir):
    found = []
    pusher = _pusher(found)
    _wait_for_socket(data_dir)
    assert (data_dir / wakeup.SOCKET_DIR).stat().st_mode & 0o777 == 0o700

    wakeup.WakeableORM(list_key="wakeup-test").enqueue("the payload")

    pusher.join(LONG_POLL / 3)
    assert not pusher.is_alive(), f"the pusher was not woken: it waits out its {LONG_POLL:g} s poll"
    assert found == ["the payload"]


def test_the_wake_up_waits_for_the_commit_of_the_queued_row(data_dir):
    waiter = wakeup.Waiter()
    try:
        waiter.sock.setblocking(False)
        with transaction.atomic():
            wakeup.WakeableORM(list_key="wakeup-test").enqueue("inside a transaction")
            with pytest.raises(BlockingIOError):  # a worker woken now would not see the row yet
                waiter.sock.recv(8)
        assert waiter.sock.recv(8) == b"!"
    finally:
        waiter.close()


def test_a_socket_left_by_a_dead_pusher_is_removed_and_queueing_still_works(data_dir):
    assert wakeup.wake_all() == 0  # no socket dir at all: nothing to wake, no error
    (data_dir / wakeup.SOCKET_DIR).mkdir(mode=0o700)
    stale = data_dir / wakeup.SOCKET_DIR / "999999"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(stale))  # bound, then its process "dies": the file stays, nobody reads it

    broker = wakeup.WakeableORM(list_key="wakeup-test")
    broker.enqueue("queued anyway")

    assert not stale.exists()
    assert broker.queue_size() == 1

"""The shared runner: conditional claims, states, logs, failures."""

import os

import pytest

from ttproject.tasks import runner
from ttproject.tasks.models import Task, TaskStatus

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

import tests.core.jobs_for_tests  # noqa: E402,F401  (registers the test jobs)


def test_a_task_runs_once_even_when_handed_out_twice(django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(runner, "enqueue", lambda task_id: None)
    task = runner.submit("test.steps", target="x", params={"count": 2, "delay": 0})
    assert task.status == TaskStatus.PENDING
    assert runner.execute(task.id) == "completed"
    assert runner.execute(task.id) == "already claimed"
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETED
    assert task.attempts == 1
    assert task.log_lines == ["step 1 of 2", "step 2 of 2"]
    assert task.result == {"steps": 2}


def test_a_failing_job_fails_its_task_with_the_message(monkeypatch):
    monkeypatch.setattr(runner, "enqueue", lambda task_id: None)
    task = runner.submit("test.fail")
    runner.execute(task.id)
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.error == "it broke"
    assert task.stderr == "details on stderr\n"
    assert task.log_lines == ["about to fail"]


def test_unknown_actions_are_refused_at_submit():
    with pytest.raises(KeyError):
        runner.submit("no.such.action")
    assert not Task.objects.exists()


def test_orphaned_running_task_is_handed_back(monkeypatch):
    queued = []
    monkeypatch.setattr(runner, "enqueue", queued.append)
    monkeypatch.setattr(runner, "_queued", lambda task_id: True)
    task = Task.objects.create(action="test.steps", status=TaskStatus.RUNNING,
                               claimed_by=f"{runner.worker_id().split(':')[0]}:999999999")
    alive = Task.objects.create(action="test.steps", status=TaskStatus.RUNNING, claimed_by=runner.worker_id())
    assert runner.requeue_orphans() == [task.id]
    task.refresh_from_db()
    alive.refresh_from_db()
    assert task.status == TaskStatus.PENDING and queued == [task.id]
    assert alive.status == TaskStatus.RUNNING


def test_a_task_whose_worker_keeps_dying_is_failed_not_requeued_forever(monkeypatch):
    queued = []
    monkeypatch.setattr(runner, "enqueue", queued.append)
    host = runner.worker_id().split(":")[0]
    task = Task.objects.create(action="test.steps", status=TaskStatus.RUNNING, attempts=runner.MAX_ATTEMPTS,
                               claimed_by=f"{host}:999999999")
    assert runner.requeue_orphans() == []
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED and "died 3 times" in task.error
    assert queued == []


def test_claim_records_the_process_that_runs_the_job(monkeypatch):
    monkeypatch.setattr(runner, "enqueue", lambda task_id: None)
    task = runner.submit("test.steps", params={"count": 0})
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    assert runner.claim(task.id)
    task.refresh_from_db()
    assert task.claimed_by.endswith(":4242")

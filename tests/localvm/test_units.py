"""In-process checks of localvm's pieces that the HTTP tests cannot reach easily."""

import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from localvm import conf, jobs, tart
from ttproject.tasks.models import Task, TaskStatus
from ttproject.tasks.runner import TaskContext
from ttproject.tasks.workers import worker_id

from .conftest import TART


def test_progress_lines_lose_terminal_escapes():
    lines, rest = tart.split_lines("pulling...\n0%\n\x1b[1A\r\x1b[J10%\n\x1b[1A\r\x1b[J2")
    assert lines == ["pulling...", "0%", "10%"]
    assert rest.endswith("2")


def test_missing_vm_is_not_found(tmp_path, monkeypatch, settings):
    settings.LOCALVM_TART_BIN = str(TART)
    monkeypatch.setenv("TART_DOUBLE_STATE", str(tmp_path))
    with pytest.raises(tart.NotFound) as exc:
        tart.get("ghost")
    assert exc.value.exit_code == 2 and 'the specified VM "ghost" does not exist' in str(exc.value)
    assert tart.list_vms() == []


def test_missing_binary(settings):
    settings.LOCALVM_TART_BIN = "/nonexistent/tart"
    with pytest.raises(tart.TartMissing):
        tart.version()
    with pytest.raises(tart.TartMissing):
        tart.stream(tart.argv("pull", "x"), 5, on_line=print)


def test_stream_times_out_and_keeps_stderr():
    script = "import sys, time; print('one', flush=True); sys.stderr.write('warn\\n'); sys.stderr.flush(); time.sleep(30)"
    seen = []
    with pytest.raises(tart.TartTimeout) as exc:
        tart.stream([sys.executable, "-c", script], 1.5, on_line=seen.append)
    assert seen == ["one"]
    assert "warn" in exc.value.stderr and "timed out after 1.5 s" in str(exc.value)


@pytest.fixture
def ctx(db):
    task = Task.objects.create(action="localvm.stop", target="vm", params={"name": "vm"},
                               status=TaskStatus.RUNNING, claimed_by=worker_id())
    return TaskContext(task)  # as a worker that claimed it: progress is only recorded by the task's holder


def test_stop_falls_back_to_plain_stop(ctx, monkeypatch):
    calls = []

    def fake_stream(cmd, timeout, *, on_line, on_stderr=None, check=True):
        calls.append(cmd[1:])
        code = 1 if "--timeout" in cmd else 0
        if on_stderr and code:
            on_stderr("Error: graceful shutdown failed\n")
        return tart.Outcome(cmd, code, "Error: graceful shutdown failed\n" if code else "")

    monkeypatch.setattr(tart, "stream", fake_stream)
    jobs._stop(ctx, "vm")
    assert calls == [["stop", "--timeout", "30", "vm"], ["stop", "vm"]]
    task = ctx.refresh()
    assert task.command[1:] == ["stop", "vm"] and task.exit_code == 0
    assert "graceful shutdown failed" in task.stderr
    assert any("trying plain tart stop" in line for line in task.log_lines)


@pytest.mark.django_db
def test_prune_keeps_recent_and_bounded_history(settings):
    settings.LOCALVM_TASK_KEEP = 5
    old = timezone.now() - timedelta(days=conf.TASK_KEEP_DAYS + 1)
    for i in range(8):
        Task.objects.create(action="localvm.pull", target=f"t{i}", status=TaskStatus.COMPLETED)
    stale = Task.objects.create(action="localvm.pull", target="stale", status=TaskStatus.FAILED)
    Task.objects.filter(pk=stale.pk).update(updated_at=old, created_at=old)
    Task.objects.create(action="localvm.pull", target="live", status=TaskStatus.RUNNING)
    jobs.prune_tasks()
    left = set(Task.objects.values_list("target", flat=True))
    assert "stale" not in left and "live" in left
    assert len(left - {"live"}) == 5
    assert {"t7", "t6", "t5", "t4", "t3"} <= left


class _Run:
    """Stands in for the `tart run` Popen: exits (returns a code) after `alive` polls."""

    def __init__(self, alive: int):
        self.alive = alive

    def poll(self):
        self.alive -= 1
        return None if self.alive >= 0 else 1


def test_wait_ip_polls_until_an_address_then_stops(monkeypatch):
    answers = iter([None, None, "192.168.64.7"])
    monkeypatch.setattr(tart, "ip", lambda name: next(answers))
    ticks = []
    assert tart.wait_ip("vm", _Run(alive=10), poll=0.01, wait=5, on_tick=lambda: ticks.append(1)) == "192.168.64.7"
    assert len(ticks) == 3


def test_wait_ip_gives_up_with_none_and_fails_when_tart_run_dies(monkeypatch):
    monkeypatch.setattr(tart, "ip", lambda name: None)
    assert tart.wait_ip("vm", _Run(alive=1000), poll=0.05, wait=0.3) is None
    with pytest.raises(tart.TartError) as died:
        tart.wait_ip("vm", _Run(alive=2), poll=0.01, wait=5)
    assert "exited with code 1" in str(died.value) and died.value.exit_code == 1

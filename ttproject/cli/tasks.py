"""`ttstack task ...`: the long actions behind 202 replies (create, delete, stop, start, imports)."""

from __future__ import annotations

import click

from .api import Api, segment
from .output import emit, fields, table, when
from .session import api_command
from .watch import Watch, env_of


@click.group("task", short_help="Tasks: the long actions behind 202 replies.", help="Tasks: the long actions behind environment and image operations.")
def task_group():
    pass


def render_tasks(tasks: list):
    return table(("ID", "ACTION", "TARGET", "STATUS", "OWNER", "CREATED", "ERROR"),
                 [(t["id"], t.get("action"), t.get("target"), t.get("status"), t.get("owner"),
                   when(t.get("created_at")), (t.get("error") or "")[:80]) for t in tasks])


def render_task(task: dict):
    from rich.console import Group

    summary = fields([("id", task["id"]), ("action", task.get("action")), ("target", task.get("target")),
                      ("status", task.get("status")), ("owner", task.get("owner")), ("error", task.get("error")),
                      ("created", when(task.get("created_at"))), ("updated", when(task.get("updated_at")))])
    logs = "\n".join(task.get("logs") or [])
    return Group(summary, "", logs) if logs else summary


@task_group.command("list", help="Recent tasks (the last 100), or only those still running.")
@click.option("--active", is_flag=True, help="only pending and running tasks")
@api_command
def task_list(api: Api, active, fmt):
    emit(api.get("/api/tasks/active" if active else "/api/tasks"), fmt, render_tasks)


@task_group.command("show", help="One task, with its log.")
@click.argument("task_id")
@api_command
def task_show(api: Api, task_id, fmt):
    emit(api.get(f"/api/tasks/{segment(task_id)}"), fmt, render_task)


@task_group.command("watch", short_help="Follow a task to its end.", help="Follow a task to its end (exit 1 if it fails); Ctrl-C stops watching only.")
@click.argument("task_id")
@api_command
def task_watch(api: Api, task_id, fmt):
    task = api.get(f"/api/tasks/{segment(task_id)}")
    watch = Watch(api, task_id, env_of(task))
    emit(watch.run(), fmt, render_task)
    if (error := watch.failure()) is not None:
        raise error

"""Tell WebSocket watchers that a task changed: a hint only; they re-read the database."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def group_name(task_id: str) -> str:
    return f"task.{task_id}"


def _send(task_id: str):
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group_name(task_id), {"type": "task.changed"})


def task_changed(task_id: str):
    # After commit, so a watcher woken by the message reads the new row, not the old one.
    transaction.on_commit(lambda: _send(task_id))

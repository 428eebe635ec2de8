"""`/ws/tasks/{id}`: the task's current state on connect, then every change; closed when it ends.

A Channels group per task (AWX) wakes the consumer at once when the layer crosses processes (Redis).
Without Redis the worker's messages never arrive here, so the consumer also re-reads the row every
TASK_POLL_INTERVAL: the database is the truth, the message only a hint.
"""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from ttproject.api.auth import is_operator, ws_principal

from .models import TERMINAL, Task
from .notify import group_name
from .serializers import task_payload


class TaskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.version = -1
        self.poller = None
        who = await database_sync_to_async(ws_principal)(self.scope)
        if who is None:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.owner = None if is_operator(who) else who.username
        await self.accept()
        if not await self._snapshot_exists():
            await self.send_json({"detail": f"Task {self.task_id} not found."})
            await self.close(code=4404)
            return
        self.group = group_name(self.task_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if await self.push():
            self.poller = asyncio.ensure_future(self.poll())

    async def disconnect(self, code):
        if self.poller:
            self.poller.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def task_changed(self, event):
        await self.push()

    async def poll(self):
        try:
            while True:
                await asyncio.sleep(settings.TASK_POLL_INTERVAL)
                if not await self.push():
                    return
        except asyncio.CancelledError:
            pass

    @database_sync_to_async
    def _snapshot_exists(self) -> bool:
        tasks = Task.objects.filter(pk=self.task_id)
        if self.owner is not None:
            tasks = tasks.filter(owner=self.owner)
        return tasks.exists()

    @database_sync_to_async
    def _read(self):
        task = Task.objects.filter(pk=self.task_id).first()
        if task is None or task.version == self.version:
            return None, task is not None and task.status not in TERMINAL
        self.version = task.version
        return task_payload(task), task.status not in TERMINAL

    async def push(self) -> bool:
        """Send the row if it changed; returns False once the task has ended (socket closed)."""
        payload, live = await self._read()
        if payload is not None:
            await self.send_json(payload)
        if not live:
            await self.close(code=1000)
            if self.poller and self.poller is not asyncio.current_task():
                self.poller.cancel()
        return live

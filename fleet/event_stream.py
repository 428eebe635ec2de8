"""`ws://…/ws/events?type=&target=&actor=`: each new event, as it is written, to subscribers allowed to
see it (Incus's /1.0/events model: subscribe with filters, receive a stream).

The event table is the truth. A subscriber remembers the last id it sent and reads the rows after it
whenever the channel layer says something was written (at once with Redis, whichever process wrote it)
and every TTSTACK_EVENT_POLL seconds (without Redis, the worker's hints never reach the web process).
Ids are handed out before their transactions commit, so a row may become visible after a higher id:
each read looks back LOOKBACK ids and skips the ones already sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ttproject.api.auth import is_operator, ws_principal

from . import conf, events
from .models_governance import Event

LOOKBACK = 200
FILTERS = ("target", "actor", "type")


class EventConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.poller = None
        who = await self.principal()
        if who is None:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.owner = None if is_operator(who) else who.username
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.filters = {key: query[key][0][:200] for key in FILTERS if query.get(key)}
        self.sent: deque[int] = deque(maxlen=4 * LOOKBACK)
        self.last = await self._newest_id()
        self.wake = asyncio.Event()
        await self.channel_layer.group_add(events.GROUP, self.channel_name)
        await self.accept()
        self.poller = asyncio.ensure_future(self.pump())

    async def disconnect(self, code):
        if self.poller:
            self.poller.cancel()
        await self.channel_layer.group_discard(events.GROUP, self.channel_name)

    async def principal(self):
        return await database_sync_to_async(ws_principal)(self.scope)

    def shown(self, row: dict) -> dict:
        return events.payload(row)

    async def events_written(self, message):
        self.wake.set()

    async def pump(self):
        try:
            while True:
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=conf.EVENT_POLL)
                except TimeoutError:
                    pass
                self.wake.clear()
                for payload in await self._read():
                    await self.send_json(payload)
        except asyncio.CancelledError:
            pass

    @database_sync_to_async
    def _newest_id(self) -> int:
        return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    @database_sync_to_async
    def _read(self) -> list[dict]:
        rows = events.matching(events.visible_to(Event.objects.filter(id__gt=self.last - LOOKBACK), self.owner),
                               **self.filters)
        sent = set(self.sent)
        out = []
        for row in rows.order_by("id").values(*events.FIELDS)[:1000]:
            if row["id"] in sent:
                continue
            self.sent.append(row["id"])
            self.last = max(self.last, row["id"])
            out.append(self.shown(row))
        return out


class DashboardConsumer(EventConsumer):
    """`/ws/dashboard`: open like the dashboard itself, so it says only that something happened (the id of
    each new event); the page then reads /dashboard.json, which shows what it may."""

    async def principal(self):
        from ttproject.api.auth import OPERATOR

        return OPERATOR  # every event counts, none is shown

    def shown(self, row: dict) -> dict:
        return {"id": row["id"]}

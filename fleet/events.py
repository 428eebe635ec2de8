"""The event record: every API mutation and every state change, who did it, and what came of it.

`record()` writes one row and, once its transaction commits, wakes the `/ws/events` subscribers through
the channel layer (fleet.event_stream). The row is the truth and the message only a hint: without Redis a
worker's message never reaches the web process, and the subscribers find its rows by reading the table.
Owners see the events of their own environments only (`visible_to`).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from . import conf
from .models_governance import Event

log = logging.getLogger(__name__)

GROUP = "fleet.events"
SYSTEM = "system"
OPERATOR = "operator"
FIELDS = ("id", "time", "actor", "action", "target", "owner", "outcome", "detail", "request_id")


def _wake():
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "events.written"})
    except Exception as exc:  # a hint only: subscribers also read the table
        log.debug("could not wake the event subscribers: %s", exc)


def record(action: str, target: str, *, actor: str = SYSTEM, owner: str = "", outcome: str = "",
           detail: dict | None = None, request_id: str = "") -> Event:
    event = Event.objects.create(actor=actor[:150], action=action[:64], target=target[:200], owner=owner[:150],
                                 outcome=str(outcome)[:255], detail=detail or {}, request_id=request_id[:64])
    transaction.on_commit(_wake)
    return event


def env_state(env, state: str, *, actor: str = SYSTEM, **detail) -> Event:
    return record("env.state", f"env/{env.pk}", actor=actor, owner=env.owner, outcome=state, detail=detail)


def vm_state(vm, state: str, owner: str) -> Event:
    return record("vm.state", f"vm/{vm.pk}", owner=owner, outcome=state, detail={"env": vm.env_id})


def visible_to(events, who_name: str | None):
    """Every event for an operator (None), else those of the owner's own environments."""
    return events if who_name is None else events.filter(owner=who_name)


def matching(events, *, since=None, target: str = "", actor: str = "", type: str = ""):  # noqa: A002 - the API's
    """The API's and the stream's filters: `type` is an action or its family (`env` = env.*)."""
    if since is not None:
        events = events.filter(time__gte=since)
    if target:
        events = events.filter(target=target)
    if actor:
        events = events.filter(actor=actor)
    if type:
        events = events.filter(action=type) | events.filter(action__startswith=type.rstrip(".") + ".")
    return events


def payload(event: Event | dict) -> dict:
    row = event if isinstance(event, dict) else {f: getattr(event, f) for f in FIELDS}
    return {**row, "time": row["time"].isoformat().replace("+00:00", "Z")}


_last_prune = [0.0]


def prune_now_and_then(every: float = 60.0) -> int:
    """prune() at most once every `every` seconds (the fleet loop calls this every tick)."""
    if time.monotonic() - _last_prune[0] < every:
        return 0
    _last_prune[0] = time.monotonic()
    return prune()


def prune() -> int:
    """Drop events older than TTSTACK_EVENT_RETENTION; how many."""
    cutoff = timezone.now() - timedelta(seconds=conf.EVENT_RETENTION)
    return Event.objects.filter(time__lt=cutoff).delete()[0]


def env_deleted(sender, instance, **kwargs):
    env_state(instance, "deleted")

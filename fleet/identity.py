"""The controller's own id (fleet.models.ControllerIdentity): made the first time it is needed, then read."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from .models import ControllerIdentity

ROW = "controller"
_cached: str | None = None


def controller_id() -> str:
    """This controller's stable id (the same for every process sharing its database)."""
    global _cached
    if _cached is None:
        _cached = _read_or_make()
    return _cached


def _read_or_make() -> str:
    found = ControllerIdentity.objects.filter(pk=ROW).values_list("value", flat=True).first()
    if found:
        return found
    try:
        with transaction.atomic():
            return ControllerIdentity.objects.create(name=ROW, value=f"ctl-{uuid.uuid4().hex}").value
    except IntegrityError:  # another process made it first
        return ControllerIdentity.objects.get(pk=ROW).value

"""Deadlines of environments: who may set which lifetime, extending one, and what happens when one passes.

Owners may ask for at most TTSTACK_MAX_LIFETIME (at create and extend) and for `lifetime: 0` (never
expires) only when TTSTACK_OWNERS_NEVER_EXPIRE allows it; operators have no limit. The fleet loop calls
`enforce()` every tick: a warning event TTSTACK_EXPIRY_WARNING before a deadline, then at the deadline the
environment's `on_expiry` policy — delete (the seed's), or stop and delete TTSTACK_STOPPED_GRACE later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ttproject.errors import Conflict, Invalid, Refused

from . import conf, events
from .choices import EnvState, OnExpiry
from .lifecycle import expire_envs
from .models import Environment
from .transitions import SETTLED, claim

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def check_lifetime(lifetime: float, *, operator: bool) -> None:
    """Refused (naming the limit) when an owner asks for more than she may; operators may ask anything."""
    if operator:
        return
    if lifetime == 0 and not conf.OWNERS_NEVER_EXPIRE:
        raise Refused("lifetime 0 (never expires) is for operators only (TTSTACK_OWNERS_NEVER_EXPIRE is off); "
                      f"owners may ask for at most {conf.MAX_LIFETIME} s ({_duration(conf.MAX_LIFETIME)}, "
                      "TTSTACK_MAX_LIFETIME)")
    if lifetime > conf.MAX_LIFETIME:
        raise Refused(f"lifetime {int(lifetime)} s is more than the {conf.MAX_LIFETIME} s "
                      f"({_duration(conf.MAX_LIFETIME)}) an owner may ask for (TTSTACK_MAX_LIFETIME)")


def extend_env(env: Environment, *, lifetime: int | None = None, expires_at: datetime | None = None,
               operator: bool, actor: str = events.SYSTEM) -> Environment:
    """A new deadline: `lifetime` seconds from now (0 = never) or `expires_at`. Invalid for a deadline in
    the past, Refused past the owner's limit, Conflict while the environment is being deleted."""
    now = timezone.now()
    if expires_at is not None:
        if expires_at <= now:
            raise Invalid("expires_at must be in the future", errors={"expires_at": ["must be in the future"]})
        seconds = (expires_at - now).total_seconds()
    else:
        seconds = lifetime
        expires_at = now + timedelta(seconds=lifetime) if lifetime else None
    check_lifetime(seconds, operator=operator)
    total = int((expires_at - env.created_at).total_seconds()) if expires_at else 0
    with transaction.atomic():
        # A stopped-at-expiry env gets its second deadline back; a deleting one is past saving.
        done = (Environment.objects.filter(pk=env.pk).exclude(state=EnvState.DELETING)
                .update(expires_at=expires_at, lifetime=max(total, 1) if expires_at else 0, expiry_warned=False,
                        delete_at=None, updated_at=now))
        if not done:
            raise Conflict(f"environment {env.id} is deleting; it cannot be extended")
        events.record("env.deadline", f"env/{env.pk}", actor=actor, owner=env.owner,
                      outcome=expires_at.isoformat() if expires_at else "never")
    env.refresh_from_db()
    return env


def extend_lifetime(envs, hours: int, actor: str = events.OPERATOR) -> int:
    """The admin's action: push each expiring environment's deadline `hours` further; how many."""
    n = 0
    for env in envs.exclude(state=EnvState.DELETING).exclude(expires_at=None):
        base = max(env.expires_at, timezone.now())
        extend_env(env, expires_at=base + timedelta(hours=hours), operator=True, actor=actor)
        n += 1
    return n


# ------------------------------------------------------------------------------ when deadlines pass


def warn_before_expiry(now: datetime) -> list[str]:
    """Record `env.expiry_warning` once per deadline, TTSTACK_EXPIRY_WARNING before it."""
    soon = (Environment.objects.filter(expires_at__lte=now + timedelta(seconds=conf.EXPIRY_WARNING),
                                       expiry_warned=False, delete_at=None)
            .exclude(state=EnvState.DELETING))
    warned = []
    for env in soon:
        with transaction.atomic():
            # conditional: another loop, or an extension (which clears the flag) meanwhile, wins
            if Environment.objects.filter(pk=env.pk, expiry_warned=False, expires_at=env.expires_at).update(
                    expiry_warned=True):
                left = max(0, int((env.expires_at - now).total_seconds()))
                events.record("env.expiry_warning", f"env/{env.pk}", owner=env.owner,
                              outcome=f"expires in {left} s",
                              detail={"expires_at": env.expires_at.isoformat(), "on_expiry": env.on_expiry})
                warned.append(env.pk)
    return warned


def stop_at_expiry(now: datetime) -> list[str]:
    """`on_expiry: stop`: at the deadline stop the environment (it keeps its disks) and set the second
    deadline, TTSTACK_STOPPED_GRACE later, when fleet.lifecycle.expire_envs deletes it."""
    expired = Q(on_expiry=OnExpiry.STOP, expires_at__lte=now, delete_at=None)
    stopped = []
    for env in Environment.objects.filter(expired).exclude(state=EnvState.DELETING):
        with transaction.atomic():
            delete_at = now + timedelta(seconds=conf.STOPPED_GRACE)
            if not Environment.objects.filter(expired, pk=env.pk).update(delete_at=delete_at):
                continue
            # an env already stopped (or failed) only gets its second deadline
            if env.state in SETTLED and env.state != EnvState.STOPPED:
                claim(env, "stop", params={"reason": "expired"})
            events.record("env.expired", f"env/{env.pk}", owner=env.owner, outcome="stopped",
                          detail={"delete_at": delete_at.isoformat()})
        log.info("environment %s expired: stopped, deleted at %s", env.pk, delete_at)
        stopped.append(env.pk)
    return stopped


def enforce() -> dict[str, list[str]]:
    """One round of the fleet loop's deadlines: warnings, stops at expiry, deletes at expiry."""
    now = timezone.now()
    return {"warned": warn_before_expiry(now), "stopped": stop_at_expiry(now), "deleted": expire_envs()}

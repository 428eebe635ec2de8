"""Module attributes that read Django settings at every access, for the apps' `conf` modules.

    __getattr__ = settings_reader("FLEET_", "HEARTBEAT", "TICK", ...)

makes `conf.HEARTBEAT` return `settings.FLEET_HEARTBEAT` as it is at that moment, so `override_settings`
and pytest-django's `settings` fixture reach code that reads `conf.HEARTBEAT`.
"""

from __future__ import annotations

from django.conf import settings


def settings_reader(prefix: str, *names: str):
    """A module `__getattr__` (PEP 562) reading each of `names` as the setting `prefix + name`."""
    known = frozenset(names)

    def __getattr__(name: str):
        if name not in known:
            raise AttributeError(f"no setting is read as {name!r} here")
        return getattr(settings, prefix + name)

    return __getattr__

"""Module attributes that read Django settings at every access, for the apps' `conf` modules.

    __getattr__ = settings_reader(HEARTBEAT="FLEET_HEARTBEAT", ...)

makes `conf.HEARTBEAT` return `settings.FLEET_HEARTBEAT` as it is at that moment, so `override_settings`
and pytest-django's `settings` fixture reach code that reads `conf.HEARTBEAT`.
"""

from __future__ import annotations

from django.conf import settings


def settings_reader(**names: str):
    """A module `__getattr__` (PEP 562) mapping attribute names to setting names."""

    def __getattr__(name: str):
        try:
            setting = names[name]
        except KeyError:
            raise AttributeError(f"no setting is read as {name!r} here") from None
        return getattr(settings, setting)

    return __getattr__

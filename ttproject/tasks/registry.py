"""Job functions by action name. Apps declare theirs in a `jobs` module with @job("action")."""

import importlib
from collections.abc import Callable

from django.apps import apps
from django.conf import settings

JOBS: dict[str, Callable] = {}


def job(action: str):
    def register(fn):
        JOBS[action] = fn
        return fn

    return register


def autodiscover():
    for module in settings.EXTRA_JOB_MODULES:  # more @job functions (used by the tests)
        importlib.import_module(module)
    for config in apps.get_app_configs():
        try:
            importlib.import_module(f"{config.name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.jobs":
                raise

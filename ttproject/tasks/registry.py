"""Job functions by action name. Apps declare theirs in a `jobs` module with @job("action")."""

import importlib
import os
from collections.abc import Callable

from django.apps import apps

JOBS: dict[str, Callable] = {}


def job(action: str):
    def register(fn):
        JOBS[action] = fn
        return fn

    return register


def autodiscover():
    # TTSTACK_EXTRA_JOB_MODULES: comma-separated modules with more @job functions (used by the tests).
    extra = [m for m in os.environ.get("TTSTACK_EXTRA_JOB_MODULES", "").split(",") if m]
    for module in extra:
        importlib.import_module(module)
    for config in apps.get_app_configs():
        try:
            importlib.import_module(f"{config.name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.jobs":
                raise

"""Settings of the localvm app, read from the Django settings at every access.

The variables, their types, defaults and meanings are declared in ttproject/settings/variables.py and listed
in docs/settings.md; tests change them with `override_settings(LOCALVM_TART_BIN=...)`.
"""

from django.conf import settings

from ttproject.appconf import settings_reader

# conf.TART_BIN is settings.LOCALVM_TART_BIN, and so on.
__getattr__ = settings_reader(
    "LOCALVM_", "TART_BIN", "TOKEN_DIR", "GITHUB_API", "GITHUB_ORG", "GITHUB_TIMEOUT", "GITHUB_CACHE_TTL",
    "GITHUB_MAX_PAGES", "CONFIG_CACHE_TTL", "INVENTORY_WORKERS", "START_POLL", "START_WAIT", "TASK_KEEP",
    "TASK_KEEP_DAYS")


def tart_timeout(command: str) -> float:
    """Seconds `tart COMMAND` may take (list get ip stop delete pull clone set version)."""
    return getattr(settings, f"LOCALVM_TART_TIMEOUT_{command.upper()}")

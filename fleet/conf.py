"""Settings of the fleet controller, read from the Django settings at every access.

The variables, their types, defaults and meanings are declared in ttproject/settings/variables.py and listed
in docs/settings.md; tests change them with `override_settings(FLEET_HEARTBEAT=...)`.
"""

from ttproject.appconf import settings_reader

# conf.HEARTBEAT is settings.FLEET_HEARTBEAT, and so on.
__getattr__ = settings_reader(
    "FLEET_", "HEARTBEAT", "HOST_TIMEOUT", "ORPHAN_GRACE", "DEFAULT_LIFETIME", "MAX_LIFETIME", "PLACEMENT",
    "CPU_OVERCOMMIT", "AGENT_TIMEOUT", "AGENT_CREATE_TIMEOUT", "TICK", "DELETE_RETRY",
    "AGENT_PARALLEL", "OWNERS_NEVER_EXPIRE", "EXPIRY_WARNING", "STOPPED_GRACE", "EVENT_RETENTION", "EVENT_POLL")

# Bounds of a VM spec (not settings): anything above is "absurd" and refused before placement.
MAX_CPU = 1024
MAX_MEM = 16 * 1024 * 1024  # MiB (16 TiB)
MAX_DISK = 1024 * 1024 * 1024  # MiB (1 PiB)
MAX_VMS_PER_ENV = 256
LIFETIME_BOUND = 10 * 365 * 86400  # seconds: the longest lifetime anyone (an operator) may set

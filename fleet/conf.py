"""Settings of the fleet controller, read from environment variables.

TTSTACK_HEARTBEAT        seconds between two polls of every agent (default 5)
TTSTACK_HOST_TIMEOUT     a host silent for this many seconds is marked offline (default 10)
TTSTACK_ORPHAN_GRACE     seconds a VM that no environment owns may live on an agent before the
                         controller destroys it (default 60)
TTSTACK_DEFAULT_LIFETIME lifetime of an environment when the request has none, seconds (default 21600);
                         0 = never expires
TTSTACK_MAX_LIFETIME     largest lifetime accepted, seconds (default 31536000 = one year)
TTSTACK_PLACEMENT        best-fit (default: fill the fullest host that fits) or spread (emptiest first)
TTSTACK_CPU_OVERCOMMIT   vCPUs placed per host CPU (default 1.0: no overcommit)
TTSTACK_AGENT_TIMEOUT    seconds to wait for an agent's answer to short calls (default 10)
TTSTACK_AGENT_CREATE_TIMEOUT  seconds to wait for an agent to create one VM (default 600)
TTSTACK_FLEET_TICK       seconds between two rounds of the fleet loop (expiry, retries) (default 1)
TTSTACK_DELETE_RETRY     seconds a delete job keeps retrying unreachable agents before leaving the rest
                         to the fleet loop (default 20)
"""

import os


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError as exc:
        raise RuntimeError(f"{name} must be a number") from exc


HEARTBEAT = _float("TTSTACK_HEARTBEAT", 5)
HOST_TIMEOUT = _float("TTSTACK_HOST_TIMEOUT", 10)
ORPHAN_GRACE = _float("TTSTACK_ORPHAN_GRACE", 60)
DEFAULT_LIFETIME = int(_float("TTSTACK_DEFAULT_LIFETIME", 21600))
MAX_LIFETIME = int(_float("TTSTACK_MAX_LIFETIME", 365 * 86400))
PLACEMENT = os.environ.get("TTSTACK_PLACEMENT", "best-fit")
CPU_OVERCOMMIT = _float("TTSTACK_CPU_OVERCOMMIT", 1.0)
AGENT_TIMEOUT = _float("TTSTACK_AGENT_TIMEOUT", 10)
AGENT_CREATE_TIMEOUT = _float("TTSTACK_AGENT_CREATE_TIMEOUT", 600)
TICK = _float("TTSTACK_FLEET_TICK", 1)
DELETE_RETRY = _float("TTSTACK_DELETE_RETRY", 20)

# Bounds of a VM spec: anything above is "absurd" and refused before placement.
MAX_CPU = 1024
MAX_MEM = 16 * 1024 * 1024  # MiB (16 TiB)
MAX_DISK = 1024 * 1024 * 1024  # MiB (1 PiB)
MAX_VMS_PER_ENV = 256
MAX_PORTS_PER_VM = 256

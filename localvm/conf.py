"""Settings of the localvm app, read from environment variables (read at import; one process = one value).

TTSTACK_TART_BIN            path or name of the tart binary (default "tart", looked up on PATH)
TTSTACK_GITHUB_API          GitHub REST API base URL (default https://api.github.com; tests point it at a
                            local fake)
TTSTACK_GITHUB_ORG          owner of the macOS images (default "cirruslabs")
TTSTACK_GITHUB_TIMEOUT      seconds per GitHub request (default 15)
TTSTACK_GITHUB_CACHE_TTL    seconds the image catalogue is cached (default 300)
TTSTACK_GITHUB_MAX_PAGES    Link pages followed per listing (default 20)
TTSTACK_CONFIG_CACHE_TTL    seconds a VM's `tart get` config is cached (default 60; ?force_refresh=true skips it)
TTSTACK_INVENTORY_WORKERS   parallel `tart ip` calls during a refresh (default 32)
TTSTACK_START_POLL          seconds between `tart ip` polls after `tart run` (default 1.5)
TTSTACK_START_WAIT          seconds to wait for the started VM's IP (default 60)
TTSTACK_TASK_KEEP           finished tasks kept at most (default 500)
TTSTACK_TASK_KEEP_DAYS      finished tasks older than this are pruned (default 7)
TTSTACK_TART_TIMEOUT_<CMD>  per-command timeout override in seconds, CMD one of LIST GET IP STOP DELETE PULL
                            CLONE SET VERSION (defaults below, from de taartenfabriek)
"""

import os


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


TART_BIN = os.environ.get("TTSTACK_TART_BIN", "tart")
GITHUB_API = os.environ.get("TTSTACK_GITHUB_API", "https://api.github.com").rstrip("/")
GITHUB_ORG = os.environ.get("TTSTACK_GITHUB_ORG", "cirruslabs")
GITHUB_TIMEOUT = _float("TTSTACK_GITHUB_TIMEOUT", 15)
GITHUB_CACHE_TTL = _float("TTSTACK_GITHUB_CACHE_TTL", 300)
GITHUB_MAX_PAGES = int(os.environ.get("TTSTACK_GITHUB_MAX_PAGES", "20"))
CONFIG_CACHE_TTL = _float("TTSTACK_CONFIG_CACHE_TTL", 60)
INVENTORY_WORKERS = int(os.environ.get("TTSTACK_INVENTORY_WORKERS", "32"))
START_POLL = _float("TTSTACK_START_POLL", 1.5)
START_WAIT = _float("TTSTACK_START_WAIT", 60)
TASK_KEEP = int(os.environ.get("TTSTACK_TASK_KEEP", "500"))
TASK_KEEP_DAYS = _float("TTSTACK_TASK_KEEP_DAYS", 7)

_DEFAULT_TIMEOUTS = {
    "list": 5, "get": 10, "ip": 4, "stop": 40, "delete": 60, "pull": 3600, "clone": 120,
    "set": 30, "version": 5,
}
TIMEOUTS = {cmd: _float(f"TTSTACK_TART_TIMEOUT_{cmd.upper()}", seconds)
            for cmd, seconds in _DEFAULT_TIMEOUTS.items()}

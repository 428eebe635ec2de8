"""The VM inventory: `tart list` plus `tart ip` of every running VM (in parallel), cached in the database.

GET /api/vms answers from the cached snapshot (refreshing once if there is none yet); POST
/api/vms/refresh and every finished job refresh it. VM configs (`tart get`) are cached per VM too. Both live
in Django's cache, a table of the role's database, so the worker can drop an entry the web process cached.
The inventory fills `os`, `cpu`, `memory` and `display` from those cached configs (a refresh never runs
`tart get` itself).
"""

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from django.core.cache import cache

from . import conf, tart

log = logging.getLogger(__name__)
INVENTORY_KEY = "localvm.inventory"
_refresh_lock = threading.Lock()


def _status(item: dict) -> str:
    if item.get("Running") is True:
        return "running"
    state = str(item.get("State") or "").lower()
    if state == "running":
        return "running"
    if state in ("stopped", "suspended"):
        return "stopped"
    if item.get("Running") is False:
        return "stopped"
    return "unknown"


def memory_text(mb) -> str | None:
    if not isinstance(mb, (int, float)) or mb <= 0:
        return None
    mb = int(mb)
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def disk_text(gb) -> str | None:
    if isinstance(gb, (int, float)) and gb > 0:
        return f"{int(gb)}G"
    return None


def normalize_config(name: str, raw: dict) -> dict:
    return {"name": name, "cpu": raw.get("CPU"), "memory": memory_text(raw.get("Memory")),
            "disk_size": disk_text(raw.get("Disk")), "raw": raw}


def to_vm(item: dict, ip_address: str | None, raw_config: dict | None) -> dict:
    raw_config = raw_config or {}
    return {
        "name": item.get("Name"),
        "status": _status(item),
        "ip_address": ip_address,
        "source": item.get("Source"),
        "os": raw_config.get("OS"),
        "cpu": raw_config.get("CPU"),
        "memory": memory_text(raw_config.get("Memory")),
        "disk_size": item.get("Disk", raw_config.get("Disk")),
        "display": raw_config.get("Display"),
    }


def _config_key(name: str) -> str:
    # Names of pulled images run to 512 characters of '/', ':' and '@': hashed, they fit any cache key.
    return "localvm.config." + hashlib.sha256(name.encode()).hexdigest()[:40]


def _cached_configs(names: Iterable[str]) -> dict[str, dict]:
    """The last `tart get` of each VM that has one, whatever its age."""
    keys = {_config_key(name): name for name in names}
    return {keys[key]: entry["raw"] for key, entry in cache.get_many(list(keys)).items()}


_UNKNOWN = object()


def _ip_or_unknown(name: str):
    try:
        return tart.ip(name)
    except tart.TartError as exc:  # one VM's failure must not sink the whole listing
        log.warning("tart ip %s failed: %s", name, exc)
        return _UNKNOWN


def fetch(expected_running: Iterable[str] = (), known_ips: dict[str, str | None] | None = None) -> list[dict]:
    """Ask tart now: `tart list`, and `tart ip` for every running VM, all at once.

    The `tart ip` of the VMs that were running at the last refresh start together with `tart list`
    (their answer is dropped if the list says they stopped), so a refresh of an unchanged host takes
    about as long as its slowest single call; VMs found running only now are asked right after.
    When `tart ip` fails or times out for a VM that was running, its last known IP (known_ips) is kept.
    """
    known_ips = known_ips or {}
    guess = list(dict.fromkeys(expected_running))
    # Threads are made on demand, so the cap costs nothing when few VMs run.
    with ThreadPoolExecutor(max_workers=max(2, conf.INVENTORY_WORKERS)) as pool:
        listing = pool.submit(tart.list_vms)
        early = {name: pool.submit(_ip_or_unknown, name) for name in guess}
        items = [item for item in listing.result() if isinstance(item, dict) and item.get("Name")]
        running = [item["Name"] for item in items if _status(item) == "running"]
        asked = {name: early.get(name) or pool.submit(_ip_or_unknown, name) for name in running}
        ips = {name: future.result() for name, future in asked.items()}
    ips = {name: known_ips.get(name) if ip is _UNKNOWN else ip for name, ip in ips.items()}
    configs = _cached_configs(item["Name"] for item in items)
    return [to_vm(item, ips.get(item["Name"]), configs.get(item["Name"])) for item in items]


def refresh() -> list[dict]:
    """Fetch from tart and store the snapshot. Callers arriving during a refresh share its result."""
    asked = time.time()
    with _refresh_lock:
        snapshot = cache.get(INVENTORY_KEY)
        if snapshot and snapshot.get("started_at", 0) >= asked:
            return snapshot["vms"]  # a refresh that began after we asked just finished
        started = time.time()
        was_running = {vm["name"]: vm.get("ip_address") for vm in (snapshot or {}).get("vms", [])
                       if vm.get("status") == "running"}
        vms = fetch(was_running, known_ips=was_running)
        snapshot = {"vms": vms, "started_at": started, "refreshed_at": time.time()}
        cache.set(INVENTORY_KEY, snapshot, timeout=None)
        return vms


def cached() -> list[dict]:
    """The last snapshot (refreshing first if there has never been one)."""
    snapshot = cache.get(INVENTORY_KEY)
    if snapshot is None:
        return refresh()
    return snapshot["vms"]


def find(name: str, *, fresh: bool = False) -> dict | None:
    """A VM by name from the cache; a miss refreshes once (it may have been made outside ttstack)."""
    vms = refresh() if fresh else cached()
    for vm in vms:
        if vm["name"] == name:
            return vm
    if fresh:
        return None
    return find(name, fresh=True)


def config(name: str, *, force: bool = False) -> dict:
    """`tart get NAME` normalised, served from the cache for CONFIG_CACHE_TTL seconds; raise tart.NotFound
    for no VM.

    The entry itself never expires (the inventory keeps showing the last known cpu and memory), so its
    freshness for this route is its own `fetched_at`."""
    key = _config_key(name)
    if not force:
        entry = cache.get(key)
        if entry is not None and time.time() - entry["fetched_at"] < conf.CONFIG_CACHE_TTL:
            return normalize_config(name, entry["raw"])
    try:
        raw = tart.get(name)
    except tart.NotFound:
        cache.delete(key)
        raise
    cache.set(key, {"raw": raw, "fetched_at": time.time()}, timeout=None)
    return normalize_config(name, raw)


def forget_config(*names: str) -> None:
    cache.delete_many([_config_key(n) for n in names])


def refresh_quietly() -> None:
    """After a job: bring the snapshot up to date, never failing the job for it."""
    try:
        refresh()
    except Exception as exc:  # noqa: BLE001 - a stale list is better than a failed job
        log.warning("inventory refresh after a job failed: %s", exc)

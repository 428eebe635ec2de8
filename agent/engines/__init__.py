"""Engine registry: name -> engine instance, with cached probes.

Engines live in `agent.engines.<name>` and subclass `agent.engines.base.Engine` with `name = "<name>"`; the
registry builds each one with its `from_settings()`. An engine whose module cannot be imported (a missing
library) is unavailable, with the reason, instead of failing the agent. Probe results are cached; a failed
probe is retried after PROBE_RETRY seconds so an engine that comes up later (dockerd started) is noticed, and
an engine with a cheap probe (`recheck_after`, docker: 1 s) is probed again that often, so one that dies is too.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import threading
import time

from agent import conf
from agent.engines.base import Engine, EngineUnavailable
from ttproject.vocabulary import ENGINES

log = logging.getLogger(__name__)

PROBE_RETRY = 30.0
# `ttstack agent` probes in its start-up hook and hands the results to the web process through this
# variable, so the first request does not pay for slow probes again (libvirt's capabilities can take 20 s).
PROBES_ENV = "TTSTACK_ENGINE_PROBES"

_lock = threading.RLock()
_instances: dict[str, Engine] = {}
_probes: dict[str, tuple[bool, str, float]] = {}


def _load(name: str) -> Engine:
    try:
        module = importlib.import_module(f"agent.engines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"agent.engines.{name}":
            raise EngineUnavailable(f"the {name} engine is not implemented in this agent") from exc
        raise EngineUnavailable(f"the {name} engine cannot be loaded: {exc}") from exc
    except ImportError as exc:
        raise EngineUnavailable(f"the {name} engine cannot be loaded: {exc}") from exc
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Engine) and not inspect.isabstract(obj) and obj.name == name:
            return obj.from_settings()
    raise EngineUnavailable(f"agent.engines.{name} defines no Engine with name {name!r}")


def get(name: str) -> Engine:
    """The engine instance (loaded once); raises EngineUnavailable if it cannot even be loaded."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}")
    with _lock:
        if name not in _instances:
            _instances[name] = _load(name)
        return _instances[name]


def _seed_from_env() -> None:
    text = os.environ.pop(PROBES_ENV, "")
    if not text:
        return
    try:
        seeded = json.loads(text)
    except ValueError:
        return
    now, wall = time.monotonic(), time.time()
    for name, (ok, why, *probed_at) in seeded.items():
        age = max(0.0, wall - float(probed_at[0])) if probed_at else 0.0  # as old as the probe itself
        _probes.setdefault(name, (bool(ok), str(why), now - age))


def export_probes() -> str:
    """The cached probe results as JSON for PROBES_ENV: [ok, why, when probed (unix time)]."""
    with _lock:
        now, wall = time.monotonic(), time.time()
        return json.dumps({name: [ok, why, wall - (now - t)] for name, (ok, why, t) in _probes.items()})


def probe(name: str) -> tuple[bool, str]:
    """(available, why not), cached."""
    if name not in conf.enabled_engines():
        return False, f"the {name} engine is disabled on this agent (TTSTACK_ENGINES)"
    with _lock:
        _seed_from_env()
        cached = _probes.get(name)
        if cached and time.monotonic() - cached[2] < _trusted_for(name, cached[0]):
            return cached[0], cached[1]
        try:
            ok, why = get(name).probe()
        except EngineUnavailable as exc:
            ok, why = False, str(exc)
        except Exception as exc:  # a probe must never take the agent down
            log.exception("probing engine %s failed", name)
            ok, why = False, f"probe failed: {type(exc).__name__}: {exc}"
        if not ok and not why:
            why = "probe failed"
        _probes[name] = (ok, why, time.monotonic())
        return ok, why


def forget_probe(name: str) -> None:
    """The engine just failed at something: its next probe asks it again instead of trusting the cache."""
    with _lock:
        _probes.pop(name, None)


def _trusted_for(name: str, ok: bool) -> float:
    """How long a probe result stands: the engine's `recheck_after` when it has one (its probe is cheap: a
    daemon that dies or comes back is seen at once), else a failure PROBE_RETRY s and a success for good."""
    try:
        recheck = get(name).recheck_after
    except EngineUnavailable:
        recheck = None
    if recheck is not None:
        return recheck
    return PROBE_RETRY if not ok else float("inf")


def available(name: str) -> Engine:
    """The engine if it works on this host, else EngineUnavailable naming it and the reason."""
    ok, why = probe(name)
    if not ok:
        raise EngineUnavailable(f"engine {name} is not available on this host: {why}")
    return get(name)


def status() -> tuple[list[str], dict[str, str]]:
    """(available engine names, {unavailable name: reason})."""
    ok_names, missing = [], {}
    for name in ENGINES:
        ok, why = probe(name)
        if ok:
            ok_names.append(name)
        else:
            missing[name] = why
    return ok_names, missing


def available_engines() -> list[Engine]:
    """Every engine that works on this host."""
    return [get(name) for name in status()[0]]


def reset(keep_probes: bool = False) -> None:
    """Forget instances (and probes unless keep_probes): tests, settings changes, forking a server."""
    with _lock:
        for engine in _instances.values():
            close = getattr(engine, "close", None)
            if close:
                try:
                    close()
                except Exception:  # noqa: S110 - best effort on reset
                    pass
        _instances.clear()
        if not keep_probes:
            _probes.clear()

"""Storage registry: `file` (alias raw) and `zvol` (alias zfs). `ttstack agent` refuses to start when the
chosen storage's probe fails (no zfs binary/module/dataset), with the probe's reason.

To add a storage: a module `agent.storage.<name>` with a `Storage` subclass whose `name` is the canonical
name, an entry in IMPLEMENTED and its names in `ttproject.vocabulary.STORAGE_ALIASES`.
"""

from __future__ import annotations

import importlib
import inspect
import threading

from agent import conf
from agent.storage.base import Storage, StorageError
from ttproject import errors
from ttproject.vocabulary import STORAGE_ALIASES

# canonical name -> module that implements it
IMPLEMENTED = {"file": "agent.storage.file", "zvol": "agent.storage.zvol"}

_lock = threading.Lock()
_instance: Storage | None = None


def canonical(name: str) -> str:
    try:
        return STORAGE_ALIASES[name.strip().lower()]
    except KeyError:
        raise errors.Invalid(f"unknown storage {name!r}; use file (alias raw) or zvol (alias zfs)") from None


def load(name: str) -> Storage:
    name = canonical(name)
    module = importlib.import_module(IMPLEMENTED[name])
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Storage) and not inspect.isabstract(obj) and obj.name == name:
            return obj()
    raise StorageError(f"{IMPLEMENTED[name]} defines no Storage named {name!r}")


def get() -> Storage:
    """The storage this agent was started with (TTSTACK_STORAGE)."""
    global _instance
    with _lock:
        if _instance is None or _instance.name != canonical(conf.storage_name()):
            _instance = load(conf.storage_name())
        return _instance


def check_works() -> Storage:
    """The configured storage if its probe passes; a domain error saying why not otherwise."""
    name = canonical(conf.storage_name())
    try:
        storage = get()
    except StorageError as exc:
        raise errors.Refused(f"--storage {name} is not available: {exc}") from exc
    ok, why = storage.probe()
    if not ok:
        raise errors.Refused(f"storage {name} does not work here: {why}")
    return storage

"""Storage registry: `file` (alias raw) and `zvol` (alias zfs). `ttstack agent` refuses to start when the
chosen storage's probe fails (no zfs binary/module/dataset), with the probe's reason.

To add a storage: a module `agent.storage.<name>` with a `Storage` subclass whose `name` is the canonical
name, plus an entry in IMPLEMENTED.
"""

from __future__ import annotations

import importlib
import inspect
import threading

from agent import conf
from agent.storage.base import Storage, StorageError
from ttproject.vocabulary import STORAGE_ALIASES

# canonical name -> module that implements it
IMPLEMENTED = {"file": "agent.storage.file", "zvol": "agent.storage.zvol"}

_lock = threading.Lock()
_instance: Storage | None = None


def canonical(name: str) -> str:
    try:
        return STORAGE_ALIASES[name.strip().lower()]
    except KeyError:
        raise StorageError(f"unknown storage {name!r}; expected one of {', '.join(sorted(STORAGE_ALIASES))}") from None


def load(name: str) -> Storage:
    name = canonical(name)
    module_name = IMPLEMENTED.get(name)
    if module_name is None:
        raise StorageError(f"storage {name!r} is not implemented in this agent yet; use --storage file")
    module = importlib.import_module(module_name)
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Storage) and not inspect.isabstract(obj) and obj.name == name:
            return obj()
    raise StorageError(f"{module_name} defines no Storage named {name!r}")


def get() -> Storage:
    """The storage this agent was started with (TTSTACK_STORAGE)."""
    global _instance
    with _lock:
        if _instance is None or _instance.name != canonical(conf.storage_name()):
            _instance = load(conf.storage_name())
        return _instance

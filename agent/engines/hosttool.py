"""What the host-tool engines (firecracker, bhyve, jail) share.

Each keeps one directory per guest under its run dir, RUN_DIR/NAME, with the guest's metadata in meta.json
(written before any side effect, so destroy always finds what to clean up). A guest is found, counted and
given an address from those files; whether it runs is the subclass's `_alive(meta)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from abc import abstractmethod
from pathlib import Path

from agent import conf, procutil
from agent.engines import probes
from agent.engines.base import MISSING, RUNNING, STOPPED, Engine, EngineError, EngineUnavailable, GuestSpec

QCOW2_MAGIC = b"QFI\xfb"


class HostToolEngine(Engine):
    """Subclasses set `run_dir`, `host_id` (and `subnet` when they use `_allocate_ip`) in `__init__`."""

    run_dir: Path
    host_id: str | None = None
    ip_key = "guest_ip"  # the meta.json field holding the guest's address
    guest_noun = ""  # how errors name a guest ("bhyve guest"); the engine's name when empty

    # ---- probing -----------------------------------------------------------------------------------------
    def _probe_freebsd(self, tools, assumed_note: str) -> tuple[bool, str]:
        """FreeBSD (unless `self.assume_freebsd`) and every tool of `tools` present."""
        ok, note = probes.assumed_or_probed(self.assume_freebsd, assumed_note, probes.is_freebsd)
        if not ok:
            return False, f"{self.name} {note}"
        ok, why = probes.binaries_present(tools)
        if not ok:
            return False, why
        return True, note

    def _require(self) -> None:
        ok, why = self.probe()
        if not ok:
            raise EngineUnavailable(f"{self.name} is not available on this host: {why}")

    def _tool(self, env_var: str, name: str) -> str:
        return probes.resolve_binary(env_var, name) or name

    # ---- metadata ----------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.run_dir / name

    def _meta(self, name: str) -> dict | None:
        return read_json(self._dir(name) / "meta.json")

    def _save(self, meta: dict) -> None:
        write_json(self._dir(meta["name"]) / "meta.json", meta)

    def _new_meta(self, spec: GuestSpec, **fields) -> dict:
        """A new guest's metadata: what every engine records about it, then the engine's own `fields`."""
        return {"name": spec.name, "vm_id": spec.vm_id, "host_id": spec.host_id,
                "hostname": spec.hostname or spec.name,
                "port_map": {str(g): h for g, h in spec.port_map.items()}, "publish_addr": spec.publish_addr,
                "deny_outgoing": spec.deny_outgoing, "created_at": time.time(), **fields}

    def _all_meta(self) -> list[tuple[str, dict]]:
        """(directory name, metadata) of every guest in the run dir, in name order."""
        if not self.run_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.run_dir.iterdir()):
            meta = read_json(entry / "meta.json")
            if meta:
                found.append((entry.name, meta))
        return found

    def _used(self, key: str, but: str) -> set:
        """The values of `key` in every guest's metadata except guest `but`'s."""
        return {meta.get(key) for name, meta in self._all_meta() if name != but}

    def _allocate_ip(self, name: str) -> str:
        used = self._used(self.ip_key, but=name)
        for host in list(self.subnet.hosts())[9:]:  # .1 is the bridge/gateway, .2-.9 left for the operator
            if str(host) not in used:
                return str(host)
        raise EngineError(f"no free address left in {self.subnet}")

    # ---- states ------------------------------------------------------------------------------------------
    def _alive(self, meta: dict) -> bool:
        return procutil.pid_alive(meta.get("pid"))

    def _present(self, meta: dict) -> bool:
        """Whether the guest recorded by `meta` can be started (its files are there)."""
        return True

    def _state_of(self, meta: dict) -> str:
        return RUNNING if self._alive(meta) else STOPPED

    def _meta_to_start(self, spec: GuestSpec) -> dict | None:
        """The metadata of a guest `start` must boot; None when it runs already. Raises when it does not exist
        or the engine does not work here."""
        meta = self._meta(spec.name)
        if meta is None or not self._present(meta):
            raise EngineError(f"{self.guest_noun or self.name} {spec.name} does not exist")
        if self._alive(meta):
            return None
        self._require()
        return meta

    # ---- Engine interface --------------------------------------------------------------------------------
    def state(self, spec: GuestSpec) -> str:
        meta = self._meta(spec.name)
        return MISSING if meta is None else self._state_of(meta)

    def list_guests(self) -> dict[str, str]:
        return {meta["vm_id"]: self._state_of(meta) for _, meta in self._all_meta()
                if not (self.host_id and meta.get("host_id") != self.host_id)}

    def ip(self, spec: GuestSpec) -> str | None:
        meta = self._meta(spec.name)
        return meta.get(self.ip_key) if meta else None


class ProcessEngine(HostToolEngine):
    """A guest is one detached process (meta["pid"]): stop asks it to shut down and forces it off after the
    timeout; destroy forces it off and removes its network and files. Subclasses say how."""

    @abstractmethod
    def _shut_down(self, meta: dict, timeout: float) -> bool:
        """Ask the guest to power off; True once its process exited within `timeout`."""

    @abstractmethod
    def _force_off(self, meta: dict) -> None:
        """End the guest's process now."""

    @abstractmethod
    def _after_exit(self, meta: dict) -> None:
        """Release what the exited process leaves behind (and record pid None)."""

    @abstractmethod
    def _teardown_network(self, meta: dict) -> None:
        """Remove the guest's tap and firewall rules."""

    @abstractmethod
    def _restore_network(self, meta: dict) -> None:
        """Make the guest's network again if it is gone (a host reboot removes taps and rules)."""

    @abstractmethod
    def _launch(self, meta: dict) -> None:
        """Start the guest's process from its metadata."""

    def _remove_files(self, meta: dict) -> None:
        shutil.rmtree(self._dir(meta["name"]), ignore_errors=True)

    def start(self, spec: GuestSpec) -> None:
        meta = self._meta_to_start(spec)
        if meta is None:
            return
        self._restore_network(meta)
        self._launch(meta)

    def stop(self, spec: GuestSpec, timeout: float = 30) -> None:
        meta = self._meta(spec.name)
        if meta is None:
            return
        if procutil.pid_alive(meta.get("pid")) and not self._shut_down(meta, timeout):
            self._force_off(meta)
        self._after_exit(meta)

    def destroy(self, spec: GuestSpec) -> None:
        meta = self._meta(spec.name)
        if meta is None:
            return
        if procutil.pid_alive(meta.get("pid")):
            self._force_off(meta)
        self._after_exit(meta)
        self._teardown_network(meta)
        self._remove_files(meta)


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when the file is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Written atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def default_run_dir(env_var: str, subdir: str) -> Path:
    """The engine's run dir: the option `env_var` if set, else DATA_DIR/subdir."""
    return Path(conf.option(env_var) or conf.data_dir() / subdir)


def short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def log_tail(path: Path) -> str:
    """The last three lines of a log, joined with " | " ("no output" when there is none)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return " | ".join(lines[-3:]) or "no output"


def is_qcow2(path: Path) -> bool:
    try:
        with open(path, "rb") as disk:
            return disk.read(4) == QCOW2_MAGIC
    except OSError:
        return False

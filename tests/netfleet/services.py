"""ttstack processes of the root namespace laid out as on separate machines: each its own data dir (or a
shared one), optionally its own hostname (a new UTS namespace), each its own process group to kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port

from .hosts import ROOT, child_env, wait_until


class Service:
    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path, url: str | None = None):
        self.name, self.argv, self.env, self.log_path, self.url = name, argv, env, log_path, url
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True, timeout: float = 90) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if wait and self.url:
            def answers():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
                try:
                    return bool(httpx.get(f"{self.url}/api/health", timeout=1))
                except httpx.HTTPError:
                    return False

            wait_until(answers, timeout, self.name, interval=0.2)
        return self

    def exited(self, within: float) -> int | None:
        """The exit code if the process ends within `within` seconds, else None (still running)."""
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            return None

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def signal(self, sig=signal.SIGKILL):
        """To the whole process group (the supervisor and its children)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, grace: float = 3):
        if self.proc is None or self.proc.poll() is not None:
            self.signal(signal.SIGKILL)  # children may outlive their supervisor
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class Services:
    """Factory of ttstack processes: web(...), worker(...), any(...)."""

    def __init__(self, base: Path):
        self.base = base
        self.made: list[Service] = []

    def data_dir(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def any(self, name: str, args: list[str], env: dict, *, hostname: str | None = None, url: str | None = None,
            data_dir: Path | None = None, start: bool = True, wait: bool = True) -> Service:
        """`ttstack ARGS` with TTSTACK_DATA_DIR=data_dir (default: its own); `hostname`: in a new UTS
        namespace with that hostname, as on another machine."""
        data_dir = data_dir or self.data_dir(name)
        argv = [sys.executable, "-m", "ttproject.cli", *args]
        if hostname:
            argv = ["unshare", "--uts", sys.executable, "-m", "tests.netfleet.inhost", "--hostname", hostname,
                    "--", *argv]
        environment = child_env(**{"TTSTACK_DATA_DIR": data_dir, "TTSTACK_BIND": "127.0.0.1",
                                   "TTSTACK_HEARTBEAT": "1", "TTSTACK_WORKERS": "2", **env})
        service = Service(name, argv, environment, self.base / f"{name}.log", url)
        self.base.mkdir(parents=True, exist_ok=True)
        self.made.append(service)
        return service.start(wait=wait) if start else service

    def web(self, name: str, env: dict, *, api_key: str, worker: bool = False, **kwargs) -> Service:
        port = free_port()
        args = ["controller", "--port", str(port), "--bind", "127.0.0.1", "--api-key", api_key]
        if not worker:
            args.append("--no-worker")
        return self.any(name, args, dict(env, TTSTACK_API_KEY=api_key), url=f"http://127.0.0.1:{port}", **kwargs)

    def worker(self, name: str, env: dict, **kwargs) -> Service:
        return self.any(name, ["worker", "--role", "controller"], env, **kwargs)

    def stop_all(self):
        for service in reversed(self.made):
            service.stop()


def operator_client(service_or_url, key: str, timeout: float = 60) -> httpx.Client:
    url = service_or_url if isinstance(service_or_url, str) else service_or_url.url
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

"""Fixtures shared by the whole suite.

- `require(component)`: docker, libvirt, postgres, redis. Missing means skip on a developer's machine
  and FAIL under CI=true: in CI these components are installed and started by .ci/run.
- `role_server`: starts `ttstack <role>` (daphne + worker) on a free 127.0.0.1 port with its own data
  dir and database, as a separate process group, so tests can kill -9 it and start it again.
- `postgres_url`: a fresh PostgreSQL database for one test, dropped afterwards.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import httpx
import pytest

CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TTSTACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TTSTACK_TEST_REDIS", "redis://127.0.0.1:6379/0")
TINY_DOCKER_IMAGE = "ttstack/tiny:latest"
LIBVIRT_URI = os.environ.get("TTSTACK_LIBVIRT_URI", "qemu:///system")


@cache
def _probe(component: str) -> str | None:
    """None if the component answers, else why not."""
    try:
        if component == "docker":
            import docker

            docker.from_env(timeout=5).ping()
        elif component == "libvirt":
            import libvirt

            libvirt.open(LIBVIRT_URI).close()
        elif component == "postgres":
            import psycopg

            psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        elif component == "redis":
            import redis

            redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=3).ping()
        elif component == "chromium":
            if not shutil.which("chromium"):
                return "chromium is not installed"
        else:
            return f"unknown component {component}"
    except Exception as exc:  # any failure to connect means "not available"
        return f"{type(exc).__name__}: {exc}"
    return None


def require(component: str):
    """Fail under CI=true, skip elsewhere, when a real component this test needs is missing."""
    why = _probe(component)
    if why is None:
        return
    message = f"{component} is required but not available ({why})"
    if CI:
        pytest.fail(message + " — CI must install and start it (.ci/run)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: a session's Playwright (tests/e2e) keeps an event loop running in the
    test thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message} (last: {last!r})")


class RoleServer:
    """One `ttstack ROLE` process tree on 127.0.0.1, with its own data dir."""

    def __init__(self, role: str, data_dir: Path, env: dict, api_key: str | None, args: list[str]):
        self.role, self.data_dir, self.api_key, self.args = role, data_dir, api_key, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.addr = f"127.0.0.1:{self.port}"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"{role}.log"

    def start(self, timeout: float = 60):
        argv = [sys.executable, "-m", "ttproject.cli", self.role, "--port", str(self.port), *self.args]
        if self.api_key and self.role != "localvm":
            argv += ["--api-key", self.api_key]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ttstack {self.role} exited {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(f"{self.url}/api/health", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"ttstack {self.role} did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def headers(self) -> dict:
        if self.role == "localvm":
            from localvm.auth import token_path

            token_file = Path(self.env.get("TTSTACK_TOKEN_DIR", "")) / "token"
            token = (token_file if token_file.exists() else token_path()).read_text().strip()
            return {"X-Local-Token": token}
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=kwargs.pop("timeout", 60),
                            **kwargs)

    def _signal(self, sig):
        # The whole group, even when the parent is gone: its daphne/worker children may outlive it.
        if self.proc:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL the whole process tree, as a crash would."""
        self._signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def stop(self, grace: float = 3):
        """SIGTERM the tree, SIGKILL what is left after `grace` seconds (the worker is slow to exit)."""
        self._signal(signal.SIGTERM)
        if self.proc:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            self.kill()

    def restart(self):
        self.stop()
        return self.start()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell at teardown that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def role_server(request, tmp_path_factory):
    """Factory: role_server("agent", api_key="k", env={...}, args=[...]) -> started RoleServer.

    When the test fails, the end of each server's log goes into the report (a failed task in CI says
    why only there)."""
    servers: list[RoleServer] = []

    def start(role: str, *, api_key: str | None = "test-key", env: dict | None = None,
              args: list[str] | None = None, data_dir: Path | None = None) -> RoleServer:
        data_dir = data_dir or tmp_path_factory.mktemp(f"{role}-")
        child_env = {k: v for k, v in os.environ.items()
                     if k not in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY", "DJANGO_SETTINGS_MODULE")}
        child_env.update(TTSTACK_DATA_DIR=str(data_dir), TTSTACK_BIND="127.0.0.1",
                         TTSTACK_PUBLISH_ADDR="127.0.0.1", TTSTACK_TOKEN_DIR=str(data_dir / "tartvm-manager"),
                         TTSTACK_WORKERS="2", TTSTACK_HEARTBEAT="1")
        child_env.update(env or {})
        server = RoleServer(role, data_dir, child_env, api_key, args or [])
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed:
        for server in servers:
            call.sections.append((f"ttstack {server.role} log ({server.addr})", server.log()[-3000:]))


@pytest.fixture
def docker_client():
    """A docker SDK client, with the locally built ttstack/tiny:latest image present."""
    require("docker")
    import docker

    client = docker.from_env()
    try:
        client.images.get(TINY_DOCKER_IMAGE)
    except docker.errors.ImageNotFound:
        from agent.imagebuild import build

        build("docker-tiny")
    return client


@pytest.fixture
def postgres_url():
    """A new empty PostgreSQL database for this test (dropped afterwards)."""
    require("postgres")
    import psycopg

    name = f"tt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url():
    require("redis")
    return REDIS_TEST_URL

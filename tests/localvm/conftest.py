"""Fixtures of the localvm tests: one `ttstack localvm` per module, with the tart double on PATH, its
own double state (seeded), and a fake GitHub. Teardown stops every VM the double still runs."""

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, RoleServer, wait_for

from .fake_github import FakeGitHub

DOUBLES = ROOT / "tests" / "doubles"
TART = DOUBLES / "tart"
BASE_IMAGE = "ghcr.io/cirruslabs/macos-sonoma-base:latest"
FAILING_VM = "broken"


def tart_cli(state: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the double directly (to arrange or inspect state behind the server's back)."""
    return subprocess.run([str(TART), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "TART_DOUBLE_STATE": str(state), **(env or {})})


def stop_all_vms(state: Path, data_dir: Path | None = None):
    listed = tart_cli(state, "list", "--format", "json")
    if listed.returncode == 0:
        for vm in json.loads(listed.stdout or "[]"):
            if vm.get("Running"):
                tart_cli(state, "stop", "--timeout", "2", vm["Name"])
    # Detached `tart run` processes the server started, by the pid files it wrote.
    if data_dir is not None:
        for pid_file in (data_dir / "localvm" / "runs").glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass


def wait_worker(server: RoleServer):
    """The worker is up (django-q2 says its cluster is running) before tests submit jobs."""
    wait_for(lambda: "] running." in server.log(), timeout=60, message="the localvm worker")


class LocalVM:
    """The running server plus what tests need around it."""

    def __init__(self, server: RoleServer, state: Path, github: FakeGitHub):
        self.server, self.state, self.github = server, state, github
        self.url = server.url
        self.port = server.port
        self.token = server.headers()["X-Local-Token"]
        self.http = server.client(timeout=30)

    def restart(self):
        self.server.log_path.write_bytes(b"")
        self.server.restart()
        wait_worker(self.server)

    def tart(self, *args: str) -> subprocess.CompletedProcess:
        return tart_cli(self.state, *args)

    def wait_task(self, task_id: str, timeout: float = 60) -> dict:
        def done():
            task = self.http.get(f"/api/tasks/{task_id}").json()
            return task if task["status"] in ("completed", "failed") else None

        return wait_for(done, timeout=timeout, interval=0.2, message=f"task {task_id}")

    def run_task(self, method_path: str, body: dict | None = None, timeout: float = 60) -> dict:
        reply = self.http.post(method_path, json=body if body is not None else {})
        assert reply.status_code == 202, reply.text
        return self.wait_task(reply.json()["id"], timeout)


@pytest.fixture(scope="module")
def fake_github():
    with FakeGitHub() as github:
        yield github


@pytest.fixture(scope="module")
def localvm(tmp_path_factory, fake_github):
    data_dir = tmp_path_factory.mktemp("localvm-")
    state = data_dir / "tart-state"
    seed = data_dir / "seed.json"
    seed.write_text(json.dumps({
        "images": [BASE_IMAGE],
        "vms": [{"name": "dev", "source": BASE_IMAGE}, {"name": "second", "source": BASE_IMAGE},
                {"name": FAILING_VM, "source": BASE_IMAGE}],
    }))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PATH=f"{DOUBLES}:{os.environ.get('PATH', '')}", TTSTACK_TART_BIN=str(TART),
        TART_DOUBLE_STATE=str(state), TART_DOUBLE_SEED=str(seed), TART_DOUBLE_PULL_STEP="0.3",
        TART_DOUBLE_BOOT_DELAY="0.5", TART_DOUBLE_RUN_FAIL=FAILING_VM,
        TTSTACK_GITHUB_API=fake_github.url, TTSTACK_START_POLL="0.5", TTSTACK_START_WAIT="20",
        TTSTACK_DATA_DIR=str(data_dir), TTSTACK_TOKEN_DIR=str(data_dir / "tartvm-manager"), TTSTACK_WORKERS="2",
    )
    env.pop("CI", None)  # the double then prints progress with tart's terminal escapes, as on a desktop
    server = RoleServer("localvm", data_dir, env, None, [])
    try:
        server.start()
        wait_worker(server)
        yield LocalVM(server, state, fake_github)
    finally:
        server.stop()
        stop_all_vms(state, data_dir)


@pytest.fixture
def api(localvm) -> httpx.Client:
    return localvm.http

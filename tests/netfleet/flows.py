"""What the namespace-fleet tests do again and again: env bodies, waiting for tasks and states."""

from __future__ import annotations

import socket
import statistics
import time
import uuid
from contextlib import contextmanager

import httpx

from tests.conftest import wait_for
from tests.fleet.helpers import ssh_key

IMAGE = "ttstack/tiny:latest"


def env_id(prefix: str = "nf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env_body(name: str, vms: int = 1, lifetime: int = 600, **vm) -> dict:
    spec = {"image": IMAGE, "engine": "docker", "cpu": 1, "mem": 64, "disk": 64, "ports": [80]}
    spec.update(vm)
    return {"id": name, "owner": "alice", "ssh_keys": [ssh_key()], "vms": [dict(spec) for _ in range(vms)],
            "lifetime": lifetime}


def wait_task(client: httpx.Client, task_id: str, timeout: float = 120) -> dict:
    def done():
        task = client.get(f"/api/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed") else None

    try:
        return wait_for(done, timeout=timeout, message=f"task {task_id}")
    except AssertionError as exc:  # say where it stands: pending (no worker took it) or running (stuck)
        task = client.get(f"/api/tasks/{task_id}").json()
        raise AssertionError(f"{exc}: {task.get('action')} is {task.get('status')}; logs: {task.get('logs')}") from None


def create_env(client: httpx.Client, body: dict, timeout: float = 120) -> dict:
    """POST the env and wait for its task; the env as the controller then shows it."""
    reply = client.post("/api/envs", json=body)
    assert reply.status_code == 202, reply.text
    task = wait_task(client, reply.json()["task"], timeout)
    assert task["status"] == "completed", task
    return client.get(f"/api/envs/{body['id']}").json()


def host_state(client: httpx.Client, host_id: int) -> str:
    return client.get(f"/api/hosts/{host_id}").json()["state"]


def wait_host_state(client: httpx.Client, host_id: int, state: str, timeout: float = 60) -> float:
    """Seconds it took for the host to show `state`."""
    started = time.monotonic()
    wait_for(lambda: host_state(client, host_id) == state, timeout=timeout, interval=0.1,
             message=f"host {host_id} {state}")
    return time.monotonic() - started


def tcp_rtt(addr: str, port: int, samples: int = 5, timeout: float = 30) -> float:
    """Median time of a TCP connect (SYN -> SYN/ACK): one round trip of the link."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        with socket.create_connection((addr, port), timeout=timeout):
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def set_drain(client: httpx.Client, host_id: int, drain: bool):
    reply = client.patch(f"/api/hosts/{host_id}", json={"drain": drain})
    assert reply.status_code == 200, reply.text


# --------------------------------------------------------------------------------------------- admin


def make_superuser(ctl, username: str = "op", password: str = "op-password-1") -> tuple[str, str]:
    """An admin account in the controller's database, made as an operator would (manage createsuperuser)."""
    import subprocess
    import sys

    from .hosts import ROOT

    subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "controller", "createsuperuser", "--noinput",
                    "--username", username, "--email", f"{username}@example.invalid"],
                   env=dict(ctl.env, DJANGO_SUPERUSER_PASSWORD=password), cwd=ROOT, check=True, capture_output=True,
                   timeout=120)
    return username, password


def _csrf(client: httpx.Client, page: str) -> str:
    import re

    reply = client.get(page)
    assert reply.status_code == 200, f"{page}: {reply.status_code}"
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', reply.text).group(1)


@contextmanager
def admin_client(ctl, username: str, password: str):
    """A browser-like session logged in to the controller's Django admin."""
    with httpx.Client(base_url=ctl.url, timeout=60, follow_redirects=False) as client:
        token = _csrf(client, "/admin/login/")
        reply = client.post("/admin/login/?next=/admin/", data={"username": username, "password": password,
                                                                "csrfmiddlewaretoken": token, "next": "/admin/"})
        assert reply.status_code == 302 and "sessionid" in client.cookies, reply.text[:500]
        yield client


def admin_delete(client: httpx.Client, model: str, pk) -> httpx.Response:
    """Confirm the admin's delete page of one object, as an operator clicking "Yes, I'm sure"."""
    page = f"/admin/fleet/{model}/{pk}/delete/"
    return client.post(page, data={"csrfmiddlewaretoken": _csrf(client, page), "post": "yes"})

"""What the namespace-fleet tests do again and again: env bodies, waiting for tasks and states."""

from __future__ import annotations

import socket
import statistics
import time
import uuid

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

    return wait_for(done, timeout=timeout, message=f"task {task_id}")


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

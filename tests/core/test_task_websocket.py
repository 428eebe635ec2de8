"""/ws/tasks/{id} on a real controller (daphne) whose task runs in its separate worker process."""

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.conftest import ROOT, run_coroutine

JOBS_ENV = {"TTSTACK_EXTRA_JOB_MODULES": "tests.core.jobs_for_tests"}


def submit_in_server_db(server, action: str, params: dict) -> str:
    """Create a task the way the server's own views do, from another process on its database."""
    code = (
        "from ttproject.tasks.runner import submit; "
        f"print(submit({action!r}, target='t', params={params!r}).id)"
    )
    out = subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "controller", "shell", "-c", code],
                         env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


async def collect(url: str, limit: float = 30) -> list[dict]:
    messages = []
    async with websockets.connect(url, open_timeout=10) as ws:
        async with asyncio.timeout(limit):
            try:
                async for raw in ws:
                    messages.append(json.loads(raw))
            except ConnectionClosedError as closed:  # an application close code such as 4404
                messages.append({"close_code": closed.rcvd.code})
    return messages


def watch(server, task_id: str) -> list[dict]:
    url = f"ws://127.0.0.1:{server.port}/ws/tasks/{task_id}?token={server.api_key}"
    return run_coroutine(collect(url))


def assert_every_change_seen(messages: list[dict], count: int):
    assert messages[-1]["status"] == "completed", messages[-1]
    assert messages[-1]["result"] == {"steps": count}
    assert len(messages[-1]["logs"]) == count
    # Each log line was written ~0.5 s after the previous one: every intermediate state must show up
    # (the last line and the completion come together, so they may arrive as one message).
    seen_lengths = [len(m["logs"]) for m in messages if m["status"] == "running"]
    assert set(range(1, count)) <= set(seen_lengths), seen_lengths
    assert any(m["status"] == "running" and not m["logs"] for m in messages) or messages[0]["status"] == "pending"


def test_worker_in_another_process_without_redis(role_server):
    server = role_server("controller", env=JOBS_ENV)
    task_id = submit_in_server_db(server, "test.steps", {"count": 4, "delay": 0.5})
    messages = watch(server, task_id)
    assert_every_change_seen(messages, 4)
    reply = httpx.get(f"{server.url}/api/tasks/{task_id}", headers=server.headers())
    assert reply.json()["logs"] == [f"step {i} of 4" for i in range(1, 5)]


def test_worker_in_another_process_through_redis(role_server, redis_url):
    # Polling effectively off: only channels-redis can deliver the intermediate states in time.
    env = dict(JOBS_ENV, REDIS_URL=redis_url, TTSTACK_TASK_POLL="60",
               TTSTACK_QUEUE_NAME=f"ttstack-test-{uuid.uuid4().hex[:8]}")
    server = role_server("controller", env=env)
    task_id = submit_in_server_db(server, "test.steps", {"count": 4, "delay": 0.5})
    messages = watch(server, task_id)
    assert_every_change_seen(messages, 4)


def test_failed_task_is_pushed_and_socket_closed(role_server):
    server = role_server("controller", env=JOBS_ENV)
    task_id = submit_in_server_db(server, "test.fail", {})
    messages = watch(server, task_id)
    assert messages[-1]["status"] == "failed"
    assert messages[-1]["error"] == "it broke"


def test_websocket_refuses_a_wrong_token_and_reports_unknown_tasks(role_server):
    server = role_server("controller", env=JOBS_ENV)
    with pytest.raises(InvalidStatus):
        run_coroutine(collect(f"ws://127.0.0.1:{server.port}/ws/tasks/{uuid.uuid4()}?token=wrong"))
    messages = run_coroutine(collect(f"ws://127.0.0.1:{server.port}/ws/tasks/{uuid.uuid4()}?token=test-key"))
    assert "not found" in messages[0]["detail"]
    assert messages[-1] == {"close_code": 4404}

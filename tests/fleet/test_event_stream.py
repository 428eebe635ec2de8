"""/ws/events on a real controller (daphne + its worker, Redis channel layer) and a real docker agent:
an owner's subscriber sees her env created, its VM running and the env active, each within a second of
being recorded, and another owner's subscriber sees none of it."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime

import httpx
import websockets

from tests.agent.conftest import agent_server, docker_tiny  # noqa: F401 - fixtures reused here
from tests.conftest import ROOT, run_coroutine

from .helpers import env_body


def make_owner(controller, name: str) -> str:
    """An owner account and its API token, made in the controller's own database; the token."""
    def manage(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "controller", *args], input=stdin,
                              env=controller.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)

    manage("add_owner", name, "--password-stdin", stdin=f"pw-{name}\n")
    return manage("drf_create_token", name).stdout.split()[2]


def recorded_at(event: dict) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


async def subscribe(url: str, received: list, ready: asyncio.Event, done):
    async with websockets.connect(url, open_timeout=10) as ws:
        ready.set()
        async for raw in ws:
            received.append((time.time(), json.loads(raw)))
            if done(received):
                return


def test_owner_subscriber_sees_her_env_come_up_and_nothing_of_others(role_server, agent_server, redis_url):  # noqa: F811
    agent = agent_server()
    # Polling off in effect: only the Redis channel layer can bring the worker's events within a second.
    controller = role_server("controller", env={"REDIS_URL": redis_url, "TTSTACK_EVENT_POLL": "30",
                                                "TTSTACK_QUEUE_NAME": f"ttstack-test-{uuid.uuid4().hex[:8]}"})
    with controller.client() as c:
        assert c.post("/api/hosts", json={"addr": agent.addr, "api_key": agent.api_key}).status_code == 201
    alice, bob = make_owner(controller, "alice"), make_owner(controller, "bob")
    env_id = f"evs-{uuid.uuid4().hex[:8]}"
    ws = f"ws://127.0.0.1:{controller.port}/ws/events"

    def as_owner(token):
        return httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def active(got):
        return any(e["action"] == "env.state" and e["outcome"] == "active" for _, e in got)

    def bobs_own(got):
        return any(e["target"] == "env/no-such-env" for _, e in got)

    async def scenario():
        streams = {"env": [], "vms": [], "bob": []}
        subscriptions = (("env", f"token={alice}&target=env/{env_id}", active),
                         ("vms", f"token={alice}&type=vm.state", lambda got: any(e["outcome"] == "running"
                                                                                  for _, e in got)),
                         ("bob", f"token={bob}", bobs_own))
        ready = {name: asyncio.Event() for name in streams}
        watching = [asyncio.ensure_future(subscribe(f"{ws}?{query}", streams[name], ready[name], done))
                    for name, query, done in subscriptions]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready.values())), 10)

        def requests():
            with as_owner(alice) as a:
                body = env_body(env_id)
                body.pop("owner")
                assert a.post("/api/envs", json=body).status_code == 202
            with as_owner(bob) as b:
                assert b.post("/api/envs/no-such-env/stop").status_code == 404

        await asyncio.to_thread(requests)
        await asyncio.wait_for(asyncio.gather(*watching), 120)
        return streams["env"], streams["vms"], streams["bob"]

    seen_by_alice, vm_events, seen_by_bob = run_coroutine(scenario())
    with controller.client() as c:
        c.delete(f"/api/envs/{env_id}")

    steps = [(e["action"], e["outcome"]) for _, e in seen_by_alice]
    assert steps[0] == ("env.create", "202") and steps[-1] == ("env.state", "active"), steps
    assert {e["actor"] for _, e in seen_by_alice} == {"alice", "system"}
    assert [e["outcome"] for _, e in vm_events] == ["creating", "running"]
    assert {e["detail"]["env"] for _, e in vm_events} == {env_id}
    for received, event in seen_by_alice + vm_events:
        assert received - recorded_at(event) < 1.0, (event, received - recorded_at(event))
    assert [(e["actor"], e["action"], e["outcome"]) for _, e in seen_by_bob] == [("bob", "env.stop", "404")]

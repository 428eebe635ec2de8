"""Issue 11, "scale-out proved": two controller web processes and two workers on PostgreSQL + Redis, each with
its own data dir as on separate machines, against three namespace hosts. One test, three faults in a row on the
same deployment (its start-up is the expensive part):

1. kill -9 the worker in the middle of a create: the other worker finishes it;
2. kill the web process serving a task's WebSocket: the client reconnects to the other and gets the current
   state, then every change to the end;
3. cut a host in the middle of a create: the env fails with a reason naming the host, the VMs on the reachable
   hosts are rolled back, nothing is left after the heal.
"""

import asyncio
import json
import os

import psycopg
import websockets

from tests.conftest import REDIS_TEST_URL, run_coroutine, wait_for

from .conftest import OPERATOR_KEY
from .flows import env_body, env_id, wait_task
from .services import operator_client


def _claimed_by(database_url: str, task_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT claimed_by FROM tasks_task WHERE id = %s AND status = 'running'",
                           (task_id,)).fetchone()
    return row[0] if row else ""


def _ws_url(web, task_id: str) -> str:
    return f"{web.url.replace('http://', 'ws://')}/ws/tasks/{task_id}?token={OPERATOR_KEY}"


async def _first(url: str) -> dict:
    async with websockets.connect(url, open_timeout=10) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def _to_the_end(url: str, limit: float = 120) -> list[dict]:
    messages = []
    async with websockets.connect(url, open_timeout=10) as ws:
        async with asyncio.timeout(limit):
            async for raw in ws:  # the server closes once the task has ended
                messages.append(json.loads(raw))
    return messages


def _containers_of(hosts, env: str) -> dict[str, list[str]]:
    return {h.name: [ct.status for ct in h.containers() if env in ct.name] for h in hosts}


def test_two_webs_two_workers_outlive_a_killed_worker_a_killed_web_and_a_cut_host(netfleet, services, postgres_url):
    fleet = netfleet(3)
    slow, other, cut = fleet.hosts
    shared = {"DATABASE_URL": postgres_url, "REDIS_URL": REDIS_TEST_URL, "TTSTACK_SECRET_KEY": "scale-out-test",
              "TTSTACK_QUEUE_NAME": f"ttn-scale-{fleet.net.run_id}", "TTSTACK_PLACEMENT": "spread",
              "TTSTACK_CPU_OVERCOMMIT": "8", "TTSTACK_WORKER_TIMEOUT": "6", "TTSTACK_HOST_TIMEOUT": "60",
              "TTSTACK_AGENT_CREATE_TIMEOUT": "20", "TTSTACK_DELETE_RETRY": "2"}
    webs = [services.web(name, shared, api_key=OPERATOR_KEY) for name in ("web1", "web2")]  # one after the other
    workers = [services.worker(name, shared) for name in ("worker1", "worker2")]
    with operator_client(webs[0], OPERATOR_KEY) as c1, operator_client(webs[1], OPERATOR_KEY) as c2:
        fleet.register(c1)

        # 1. kill -9 the worker in the middle of a create (its agent on `slow` holds the VM's create)
        slow.freeze_agent()
        first = env_id("kill9")
        task = c2.post("/api/envs", json=env_body(first, vms=3)).json()["task"]
        holder = wait_for(lambda: _claimed_by(postgres_url, task), timeout=60, message="a worker in the create")
        pgid = os.getpgid(int(holder.rsplit(":", 1)[1]))
        [victim] = [w for w in workers if w.proc.pid == pgid]
        victim.kill()
        slow.thaw_agent()
        final = wait_task(c1, task, timeout=120)
        assert final["status"] == "completed", final
        assert any("lost; task handed to another worker" in line for line in final["logs"]), final["logs"]
        assert c2.get(f"/api/envs/{first}").json()["state"] == "active"
        assert _containers_of(fleet.hosts, first) == {h.name: ["running"] for h in fleet.hosts}

        # 2 + 3. a create with one host cut in its middle, watched over web1 until web1 is killed
        cut.cut()  # the controller still has it online: one VM is placed there
        second = env_id("cut")
        task = c2.post("/api/envs", json=env_body(second, vms=3)).json()["task"]
        assert run_coroutine(_first(_ws_url(webs[0], task)))["status"] in ("pending", "running")
        webs[0].kill()
        messages = run_coroutine(_to_the_end(_ws_url(webs[1], task)))
        assert messages[0]["status"] in ("pending", "running", "failed"), messages[0]
        assert messages[-1]["status"] == "failed", messages[-1]
        assert cut.agent_addr in messages[-1]["error"], messages[-1]["error"]
        env = c2.get(f"/api/envs/{second}").json()
        assert env["state"] == "failed" and cut.agent_addr in env["error"], env
        assert _containers_of([slow, other], second) == {slow.name: [], other.name: []}  # rolled back
        cut.heal()
        wait_for(lambda: _containers_of(fleet.hosts, second) == {h.name: [] for h in fleet.hosts}, timeout=90,
                 message="nothing of the failed env left after the heal")

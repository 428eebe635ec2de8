"""The controller's side of environment networks: a real controller and a real docker agent. An env is
isolated by default (its VMs share a network and reach each other by hostname, each VM's private address in
the env's JSON); `isolated_network: false` keeps each VM on docker's default bridge, as before."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from tests.agent.conftest import TINY, containers_of
from tests.conftest import require, wait_for
from tests.fleet.helpers import ssh_key
from tests.networks.conftest import host_id_of

pytestmark = pytest.mark.timeout(600)


def wait_task(client, task_id):
    def done():
        task = client.get(f"/api/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed") else None

    return wait_for(done, timeout=120, message=f"task {task_id}")


def make_env(client, env_id: str, **extra) -> dict:
    vm = {"image": TINY, "engine": "docker", "cpu": 1, "mem": 64, "disk": 64, "ports": [80]}
    body = {"id": env_id, "owner": "alice", "ssh_keys": [ssh_key()], "vms": [dict(vm), dict(vm)],
            "lifetime": 600, **extra}
    reply = client.post("/api/envs", json=body)
    assert reply.status_code == 202, reply.text
    assert wait_task(client, reply.json()["task"])["status"] == "completed"
    return client.get(f"/api/envs/{env_id}").json()


def fetch(host_id: str, vm: dict, target: str) -> str:
    (container,) = [c for c in containers_of(host_id) if c.labels["ttstack.vm_id"] == vm["id"]]
    code, out = container.exec_run(["sh", "-c", f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {target} 80'])
    return out.decode(errors="replace") if code == 0 else ""


def test_env_network_through_the_controller(role_server, agent):
    require("docker")
    node = agent()
    host_id = host_id_of(node)
    ctl = role_server("controller", env={"TTSTACK_CPU_OVERCOMMIT": "4"})  # two envs on a small host
    tag = uuid.uuid4().hex[:6]
    with ctl.client() as c:
        assert c.post("/api/hosts", json={"addr": node.addr, "api_key": node.api_key}).status_code == 201
        env = make_env(c, f"ttw-iso-{tag}")
        assert env["isolated_network"] is True
        first, second = env["vms"]
        subnet = ipaddress.ip_network(f"{first['ip']}/24", strict=False)
        assert ipaddress.ip_address(second["ip"]) in subnet and not subnet.overlaps(
            ipaddress.ip_network("172.17.0.0/16"))
        for src, dst in ((first, second), (second, first)):
            assert dst["hostname"] in wait_for(lambda s=src, d=dst: fetch(host_id, s, d["hostname"]), timeout=30)

        legacy = make_env(c, f"ttw-flat-{tag}", isolated_network=False)
        assert legacy["isolated_network"] is False
        assert all(ipaddress.ip_address(vm["ip"]) in ipaddress.ip_network("172.16.0.0/12") for vm in legacy["vms"])
        assert not fetch(host_id, legacy["vms"][0], legacy["vms"][1]["hostname"])  # no names on the default bridge

        for env_id in (env["id"], legacy["id"]):
            reply = c.delete(f"/api/envs/{env_id}")
            assert wait_task(c, reply.json()["task"])["status"] == "completed"
    from tests.networks.hostobjects import leftovers

    assert leftovers(host_id, node.data_dir)["docker networks"] == []

"""Environment networks and deny_outgoing on docker, for real: a `ttstack agent` process, the docker daemon,
iptables, and an "outside" listener in a network namespace of the test's own."""

from __future__ import annotations

import io
import socket
import sqlite3

import pytest

from tests.agent.conftest import TINY, containers_of, docker_client
from tests.conftest import require, wait_for
from tests.networks.conftest import host_id_of
from tests.networks.hostobjects import leftovers
from tests.networks.listeners import AcceptCounter

pytestmark = pytest.mark.timeout(900)

RUNS = 50  # creates in a row, with and without deny_outgoing
ATTEMPTS = 10  # connection attempts across environments, each direction


@pytest.fixture(autouse=True)
def _docker():
    require("docker")


def create(client, **body):
    body = {"engine": "docker", "image": TINY, "cpu": 1, "mem": 64, "disk": 100, **body}
    reply = client.post("/api/vms", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def connect_image(out) -> str:
    """ttstack/tiny whose entry point is a connection to the outside listener: its very first instruction."""
    tag = f"ttw/connect-first-{out.addr.replace('.', '-')}:latest"
    dockerfile = f'FROM {TINY}\nENTRYPOINT ["nc", "-w", "3", "{out.addr}", "{out.port}"]\n'
    docker_client().images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True)
    return tag


def exec_in(host_id: str, vm_id: str, script: str) -> tuple[int, str]:
    (container,) = [c for c in containers_of(host_id) if c.labels["ttstack.vm_id"] == vm_id]
    code, output = container.exec_run(["sh", "-c", script])
    return code, output.decode(errors="replace")


def http_from(host_id: str, vm_id: str, target: str) -> str | None:
    """The page `target` (hostname or address) serves on port 80, fetched inside VM `vm_id`; None if none."""
    code, out = exec_in(host_id, vm_id, f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {target} 80')
    return out if code == 0 and "200 OK" in out else None


@pytest.mark.parametrize("network", ["ttw-first", ""], ids=["env-network", "default-bridge"])
def test_deny_outgoing_holds_from_the_first_packet(agent, outside, network):
    out = outside()
    image = connect_image(out)
    server = agent()
    runs = RUNS if network else RUNS // 5
    try:
        with server.client() as c:
            for deny in (True, False):
                before = out.connections
                ids = [create(c, id=f"first-{int(deny)}-{i}", image=image, deny_outgoing=deny,
                              **({"network": network} if network else {}))["id"] for i in range(runs)]
                # every entry point has run to its end (nc gives up after 3 s): nothing more can arrive
                wait_for(lambda ids=ids: all(c.get(f"/api/vms/{i}").json()["state"] == "stopped" for i in ids),
                         timeout=120, message="the connecting containers to exit")
                arrived = out.connections - before
                print(f"\ndocker ({network or 'default bridge'}), deny_outgoing={deny}: "
                      f"{arrived} of {runs} first-instruction connections arrived")
                assert arrived == (0 if deny else runs)
                for vm_id in ids:
                    assert c.delete(f"/api/vms/{vm_id}").status_code == 204
    finally:
        docker_client().images.remove(image, force=True)


PORT_RANGE = (47000, 47999)  # the agent's published ports; the host service below is outside it


def test_two_envs_on_one_host_are_apart(agent):
    server = agent(env={"TTSTACK_PORT_RANGE": f"{PORT_RANGE[0]}-{PORT_RANGE[1]}"})
    host_id = host_id_of(server)
    with server.client() as c:
        vms = {}
        for env in ("a", "b"):
            vms[f"{env}1"] = create(c, id=f"{env}1", hostname=f"{env}1", ports=[80], network=f"ttw-env-{env}")
            # the second of each env denies outgoing traffic: its env's peers stay reachable
            vms[f"{env}2"] = create(c, id=f"{env}2", hostname=f"{env}2", ports=[80], network=f"ttw-env-{env}",
                                    deny_outgoing=True)
        for vm in vms.values():
            assert vm["ip"] and vm["network"].startswith("ttw-env-"), vm  # the private address at create
        # inside an env: both guests reach each other by hostname
        for src, dst in (("a1", "a2"), ("a2", "a1"), ("b1", "b2"), ("b2", "b1")):
            page = wait_for(lambda s=src, d=dst: http_from(host_id, s, d), timeout=30, message=f"{src} -> {dst}")
            assert dst in page
        # across envs: not by address, not by name, both directions
        reached = 0
        for src, dst in (("a1", "b1"), ("b1", "a1"), ("a2", "b2"), ("b2", "a2")):
            for _ in range(ATTEMPTS):
                reached += http_from(host_id, src, vms[dst]["ip"]) is not None
            code, answer = exec_in(host_id, src, f"nslookup {dst}")
            assert vms[dst]["ip"] not in answer, answer
        print(f"\ndocker: {reached} of {4 * ATTEMPTS} connections across environments succeeded")
        assert reached == 0
        # the agent host's own services are out of reach too (published ports are not: see docs/networks.md)
        gateway = docker_client().networks.get(f"tt-{host_id[:8]}-ttw-env-a").attrs["IPAM"]["Config"][0]["Gateway"]
        service = AcceptCounter(gateway, avoid=PORT_RANGE)
        socket.create_connection((gateway, service.port), timeout=3).close()  # it answers the host itself
        code, _ = exec_in(host_id, "a1", f"nc -w 2 {gateway} {service.port} </dev/null")
        assert code != 0 and service.accepted == 1
        service.close()


def _forget(db: str, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(sql)


def test_agent_killed_and_restarted_leaves_nothing_of_deleted_envs(agent):
    server = agent()
    host_id = host_id_of(server)
    with server.client() as c:
        for env in ("gone", "half", "kept"):
            create(c, id=f"{env}-1", hostname=f"{env}1", ports=[80], network=f"ttw-{env}")
            create(c, id=f"{env}-2", hostname=f"{env}2", network=f"ttw-{env}", deny_outgoing=True)
    made = leftovers(host_id, server.data_dir)
    assert len(made["docker networks"]) == 3 and len(made["holders"]) == 3 and len(made["chains"]) == 6, made  # INPUT and OUTPUT
    server.kill()
    db = str(server.data_dir / "agent.sqlite3")
    # "gone": the records were deleted and nothing on the host was (a crash in the middle of the env's delete,
    # seen from the worst side); "half": the agent died while deleting it
    _forget(db, "DELETE FROM agent_portallocation WHERE vm_id LIKE 'gone-%'")
    _forget(db, "DELETE FROM agent_vm WHERE network = 'ttw-gone'")
    _forget(db, "UPDATE agent_vm SET state = 'deleting' WHERE network = 'ttw-half'")
    server.start()
    left = leftovers(host_id, server.data_dir)
    assert left["docker networks"] == [f"tt-{host_id[:8]}-ttw-kept"], left
    assert left["holders"] == [f"tt-{host_id[:8]}-kept-2-netns"], left
    assert len(left["chains"]) == 2, left
    with server.client() as c:
        assert sorted(vm["id"] for vm in c.get("/api/vms").json()) == ["kept-1", "kept-2"]
        assert c.delete("/api/vms/kept-1").status_code == 204
        assert leftovers(host_id, server.data_dir)["docker networks"], "removed while kept-2 still uses it"
        assert c.delete("/api/vms/kept-2").status_code == 204
    assert leftovers(host_id, server.data_dir) == {"docker networks": [], "holders": [], "bridges": [],
                                                  "chains": [], "name servers": []}

"""Fleet controller benchmarks; prints three figures (issue 4).

1. An environment of 8 docker VMs on 2 real agents, POST /api/envs -> all running, against one raw
   docker-SDK run of the same image in this process (goal: <= 1.5x).
2. The placement algorithm placing 10 000 VMs on 1 000 host rows (goal: <= 2 s).
3. GET /api/envs with 1 000 environments x 3 VMs: query count (constant) and speed against a bare
   Django JsonResponse of the same rows (goal: >= 0.5x).

    .venv/bin/python bench/fleet.py [--skip-agents]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["TTSTACK_DATA_DIR"] = tempfile.mkdtemp(prefix="ttstack-bench-")
os.environ["TTSTACK_ROLE"] = "controller"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttproject.settings")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("TTSTACK_API_KEY", None)

IMAGE = "ttstack/tiny:latest"


def bench_env_vs_docker(rounds: int = 3):
    import docker
    import httpx

    from tests.conftest import RoleServer

    client = docker.from_env()
    base = Path(os.environ["TTSTACK_DATA_DIR"])
    common = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "TTSTACK_ROLE")}
    common.update(TTSTACK_BIND="127.0.0.1", TTSTACK_PUBLISH_ADDR="127.0.0.1", TTSTACK_HEARTBEAT="1")
    servers = []
    try:
        for i in range(2):
            d = base / f"agent{i}"
            d.mkdir()
            servers.append(RoleServer("agent", d, dict(common, TTSTACK_DATA_DIR=str(d), TTSTACK_ENGINES="docker"),
                                      "k", []).start(120))
        d = base / "controller"
        d.mkdir()
        # 8 VMs of 2 vCPUs on two 2-core hosts: overcommit so the env fits, 4 per host (best-fit).
        ctl = RoleServer("controller", d, dict(common, TTSTACK_DATA_DIR=str(d), TTSTACK_CPU_OVERCOMMIT="4",
                                                TTSTACK_WORKERS="2"), "k", []).start(120)
        servers.append(ctl)
        http = httpx.Client(base_url=ctl.url, headers={"Authorization": "Bearer k"}, timeout=60)
        for agent in servers[:2]:
            assert http.post("/api/hosts", json={"addr": agent.addr}).status_code == 201

        def one_env() -> float:
            env_id = f"bench-{uuid.uuid4().hex[:6]}"
            body = {"id": env_id, "ssh_keys": [_key()], "lifetime": 0,
                    "vms": [{"image": IMAGE, "engine": "docker", "cpu": 2, "mem": 64, "disk": 64, "ports": [80]}] * 8}
            t0 = time.perf_counter()
            r = http.post("/api/envs", json=body)
            assert r.status_code == 202, r.text
            while True:
                env = http.get(f"/api/envs/{env_id}").json()
                if env["state"] != "creating":
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            assert env["state"] == "active", env
            assert len({vm["host"] for vm in env["vms"]}) == 2
            task = http.delete(f"/api/envs/{env_id}").json()["task"]
            while http.get(f"/api/tasks/{task}").json()["status"] not in ("completed", "failed"):
                time.sleep(0.1)
            return elapsed

        def one_docker() -> float:
            t0 = time.perf_counter()
            c = client.containers.run(IMAGE, detach=True, ports={"80/tcp": ("127.0.0.1", None)},
                                      name=f"ttbench-{uuid.uuid4().hex[:6]}")
            c.reload()
            elapsed = time.perf_counter() - t0
            assert c.status == "running", c.status
            c.remove(force=True)
            return elapsed

        def eight_dockers() -> float:
            """The floor on this machine: the same 8 containers started in parallel straight through dockerd."""
            from concurrent.futures import ThreadPoolExecutor

            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                made = list(pool.map(lambda _: client.containers.run(
                    IMAGE, detach=True, ports={"80/tcp": ("127.0.0.1", None)},
                    name=f"ttbench-{uuid.uuid4().hex[:6]}"), range(8)))
            elapsed = time.perf_counter() - t0
            for c in made:
                c.remove(force=True)
            return elapsed

        one_env()  # warm up (imports, first connections)
        one_docker()
        env_t = statistics.median(one_env() for _ in range(rounds))
        dock_t = statistics.median(one_docker() for _ in range(rounds))
        eight_t = statistics.median(eight_dockers() for _ in range(rounds))
        print(f"1. env of 8 docker VMs on 2 agents, POST -> all running: {env_t:.2f} s; "
              f"one raw docker run: {dock_t:.2f} s; ratio {env_t / dock_t:.2f}x (goal <= 1.5x); "
              f"8 raw docker runs in parallel: {eight_t:.2f} s; ratio {env_t / eight_t:.2f}x")
    finally:
        for server in servers:
            server.stop()


def _key():
    import base64
    import struct

    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + os.urandom(32)
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def bench_placement():
    from fleet.placement import HostCap, VmReq, place

    hosts = [HostCap(id=i, name=f"h{i}", engines=frozenset({"docker", "qemu"}),
                     images={"alpine": frozenset({"qemu"})}, cpu_free=64, mem_free=256 * 1024,
                     disk_free=4 * 1024 * 1024) for i in range(1000)]
    vms = [VmReq("alpine" if i % 2 else IMAGE, "qemu" if i % 2 else "docker", 1 + i % 4, 512 * (1 + i % 8),
                 10240) for i in range(10_000)]
    t0 = time.perf_counter()
    result = place(hosts, vms)
    elapsed = time.perf_counter() - t0
    assert len(result) == 10_000
    print(f"2. placement: 10 000 VMs on 1 000 hosts in {elapsed:.3f} s (goal <= 2 s)")


def bench_env_list():
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.http import JsonResponse
    from django.test import Client

    call_command("migrate", verbosity=0)
    from fleet.models import Environment, Host, Vm

    host = Host.objects.create(addr="127.0.0.1:9", cpu_total=10**6, mem_total=10**9, disk_total=10**12,
                               engines=["docker"])
    Environment.objects.bulk_create([Environment(id=f"env-{i:04}", owner="alice", ssh_keys=[_key()],
                                                 lifetime=600, state="active") for i in range(1000)])
    Vm.objects.bulk_create([Vm(id=f"env-{i:04}-{j}", env_id=f"env-{i:04}", index=j, host=host, image=IMAGE,
                               engine="docker", cpu=1, mem=64, disk=64, ports=[80], state="running",
                               port_map={"80": 20000 + i * 3 + j}, publish_addr="127.0.0.1")
                            for i in range(1000) for j in range(3)])

    def bare():
        envs = list(Environment.objects.values("id", "owner", "state", "error", "lifetime", "expires_at",
                                               "created_at", "updated_at"))
        vms = list(Vm.objects.values("id", "env_id", "index", "host_id", "host__addr", "image", "engine", "cpu",
                                     "mem", "disk", "ports", "deny_outgoing", "hostname", "state", "ip",
                                     "port_map", "publish_addr", "error", "created_at", "updated_at"))
        return JsonResponse({"envs": envs, "vms": vms})

    client = Client()

    def api():
        response = client.get("/api/envs")
        assert response.status_code == 200
        return response

    queries = []

    def counting(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):  # the request resets connection.queries: count directly
        data = api().json()
    assert len(data) == 1000 and all(len(e["vms"]) == 3 for e in data)

    def interleaved(a, b, n=15):
        """Median seconds of a() and of b(), run alternately so that both see the same machine load."""
        a(), b()
        samples: tuple[list, list] = ([], [])
        for _ in range(n):
            for fn, out in ((a, samples[0]), (b, samples[1])):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return statistics.median(samples[0]), statistics.median(samples[1])

    api_t, bare_t = interleaved(api, bare)
    print(f"3. GET /api/envs, 1 000 envs x 3 VMs: {len(queries)} queries, {api_t * 1000:.0f} ms; "
          f"bare JsonResponse {bare_t * 1000:.0f} ms; speed {bare_t / api_t:.2f}x of bare (goal >= 0.5x)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-agents", action="store_true", help="only the in-process figures (2, 3)")
    args = parser.parse_args()
    if not args.skip_agents:
        bench_env_vs_docker()
    bench_placement()
    bench_env_list()


if __name__ == "__main__":
    main()

"""Agent create times (run: .venv/bin/python bench/agent_create.py [--reps N] [--skip-qemu] [--skip-docker]).

1. docker: POST /api/vms to a real `ttstack agent` (answers once the container runs) vs a raw docker-SDK
   `containers.run` of the same image with the same limits and a published port, in this process.
   Goal: agent / raw <= 1.15.
2. qemu: POST /api/vms of a VM whose base is an 8 GiB sparse raw disk vs a 100 MiB one (both made with
   qemu-img). The file storage makes a qcow2 overlay, so the base's size should not matter. Goal <= 1.2.
Medians of N repetitions, alternating the two sides; everything made is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TINY = "ttstack/tiny:latest"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Agent:
    def __init__(self, engines: str):
        self.data_dir = Path(tempfile.mkdtemp(prefix="ttstack-bench-"))
        self.data_dir.chmod(0o755)  # qemu (libvirt-qemu) must reach the VM files
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY")}
        env.update(TTSTACK_DATA_DIR=str(self.data_dir), TTSTACK_ENGINES=engines, TTSTACK_PUBLISH_ADDR="127.0.0.1",
                   TTSTACK_STOP_TIMEOUT="5")
        self.log = open(self.data_dir / "agent.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "ttproject.cli", "agent", "--port", str(self.port),
                                      "--bind", "127.0.0.1"], env=env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agent exited: {(self.data_dir / 'agent.log').read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/api/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.client = httpx.Client(base_url=self.url, timeout=300)
        self.host_id = (self.data_dir / "host_id").read_text().strip()

    def create(self, body: dict) -> float:
        start = time.perf_counter()
        reply = self.client.post("/api/vms", json=body)
        elapsed = time.perf_counter() - start
        if reply.status_code != 201 or reply.json()["state"] != "running":
            raise SystemExit(f"create failed: {reply.status_code} {reply.text}")
        return elapsed

    def delete(self, vm_id: str) -> None:
        self.client.delete(f"/api/vms/{vm_id}")

    def close(self) -> None:
        self.client.close()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def report(title: str, label_a: str, a: list[float], label_b: str, b: list[float], goal: float) -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = ma / mb
    print(f"\n{title}")
    print(f"  {label_a:<34} median {ma * 1000:8.1f} ms  ({', '.join(f'{x * 1000:.0f}' for x in a)})")
    print(f"  {label_b:<34} median {mb * 1000:8.1f} ms  ({', '.join(f'{x * 1000:.0f}' for x in b)})")
    print(f"  ratio {ratio:.2f}x (goal <= {goal}x) -> {'OK' if ratio <= goal else 'ABOVE GOAL'}")


def bench_docker(reps: int) -> None:
    import docker

    from agent.imagebuild.docker_tiny import build_docker_tiny

    client = docker.from_env(timeout=120)
    build_docker_tiny(log=lambda _l: None, client=client)
    agent = Agent("docker")
    api, raw = [], []
    try:
        for i in range(reps + 1):  # the first round warms both sides up and is not counted
            vm_id = f"bench-{i}"
            t = agent.create({"id": vm_id, "image": TINY, "engine": "docker", "cpu": 1, "mem": 64, "disk": 100,
                              "ports": [80]})
            agent.delete(vm_id)
            start = time.perf_counter()
            container = client.containers.run(TINY, name=f"ttstack-bench-raw-{os.getpid()}-{i}", detach=True,
                                              nano_cpus=1_000_000_000, mem_limit="64m",
                                              ports={"80/tcp": ("127.0.0.1", free_port())},
                                              labels={"ttstack.bench": "1"})
            r = time.perf_counter() - start
            container.remove(force=True)
            if i:
                api.append(t)
                raw.append(r)
    finally:
        agent.close()
        for container in client.containers.list(all=True, filters={"label": ["ttstack.bench=1"]}):
            container.remove(force=True)
        for container in client.containers.list(all=True, filters={"label": [f"ttstack.host_id={agent.host_id}"]}):
            container.remove(force=True)
    report("docker: create-to-running", "agent POST /api/vms", api, "raw docker SDK containers.run", raw, 1.15)


def bench_qemu(reps: int) -> None:
    agent = Agent("qemu")
    images = agent.data_dir / "images"
    images.mkdir(exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(images / "big.raw"), "8G"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(images / "small.raw"), "100M"], check=True)
    times: dict[str, list[float]] = {"big": [], "small": []}
    try:
        for i in range(reps + 1):
            for name in ("big", "small") if i % 2 else ("small", "big"):
                vm_id = f"bench-{name}-{i}"
                t = agent.create({"id": vm_id, "image": name, "engine": "qemu", "cpu": 1, "mem": 128,
                                  "disk": 10240})
                agent.delete(vm_id)
                if i:
                    times[name].append(t)
    finally:
        agent.close()
        try:
            import libvirt

            conn = libvirt.open(os.environ.get("TTSTACK_LIBVIRT_URI", "qemu:///system"))
            for dom in conn.listAllDomains(0):
                if dom.name().startswith(f"tt-{agent.host_id[:8]}-"):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            conn.close()
        except Exception as exc:  # the agent deleted them already; this only catches leftovers
            print(f"(libvirt cleanup: {exc})")
    report("qemu: create-to-running by base size (sparse raw bases, qcow2 overlay)",
           "8 GiB base", times["big"], "100 MiB base", times["small"], 1.2)
    bench_overlay(reps)


def bench_overlay(reps: int) -> None:
    """The storage step alone (what depends on the base at all): FileStorage.create_disk per base."""
    from agent.engines.base import Image
    from agent.storage.file import FileStorage

    work = Path(tempfile.mkdtemp(prefix="ttstack-bench-overlay-"))
    try:
        bases = {}
        for name, size in (("big", "8G"), ("small", "100M")):
            bases[name] = work / f"{name}.raw"
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(bases[name]), size], check=True)
        storage = FileStorage()
        times: dict[str, list[float]] = {"big": [], "small": []}
        for i in range(reps):
            for name, base in bases.items():
                image = Image(name=name, engine_kind="vm", disk=base, disk_format="raw")
                start = time.perf_counter()
                storage.create_disk(f"{name}{i}", image, 10240, work / f"{name}{i}")
                times[name].append(time.perf_counter() - start)
                storage.destroy_disk(f"{name}{i}", work / f"{name}{i}")
        report("qemu storage step alone: qcow2 overlay on the base", "8 GiB base", times["big"],
               "100 MiB base", times["small"], 1.2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--skip-qemu", action="store_true")
    args = parser.parse_args()
    if not args.skip_docker:
        bench_docker(args.reps)
    if not args.skip_qemu:
        bench_qemu(args.reps)


if __name__ == "__main__":
    main()

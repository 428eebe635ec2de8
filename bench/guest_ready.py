"""Time to a usable Debian guest (run: .venv/bin/python bench/guest_ready.py [--reps N]).

ttstack: POST /api/envs of one debian-12 qemu VM to a real controller with one real agent, until the VM's
`ssh.ready` is true (the agent saw the SSH banner and host keys on the published port). Baseline: a bare
`qemu-system-x86_64` boot of the same image (a qcow2 overlay of the same base, the same kernel, initrd and
cmdline, the same NoCloud seed, user-mode networking with one hostfwd), started in this process, until its
forwarded port sends an SSH banner. Same vCPU, memory, disk and accelerator (the one the agent's KVM probe
chose: KVM when a KVM guest really runs, else TCG) on both sides. Goal: ttstack / bare <= 1.1.

debian-12 is taken from the build cache (built there first when missing: minutes). Medians of N repetitions
(default 2), alternating which side boots first; everything made is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASE = Path(tempfile.mkdtemp(prefix="ttstack-bench-ready-"))
BASE.chmod(0o755)  # qemu (libvirt-qemu) must reach the agent's VM files below it
for name in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY", "DJANGO_SETTINGS_MODULE", "TTSTACK_ROLE"):
    os.environ.pop(name, None)
os.environ["TTSTACK_DATA_DIR"] = str(BASE / "bench")

CPU, MEM, DISK = 1, 1024, 4096
TIMEOUT = 1200.0
KEY = "bench-key"


def _ssh_key() -> str:
    key = BASE / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


def _wait(predicate, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{what}: not within {TIMEOUT:.0f} s")


def _servers(agent_dir: Path):
    from tests.conftest import RoleServer

    common = {k: v for k, v in os.environ.items()}
    common.update(TTSTACK_BIND="127.0.0.1", TTSTACK_PUBLISH_ADDR="127.0.0.1", TTSTACK_HEARTBEAT="1",
                  TTSTACK_SSH_READY_TIMEOUT=str(TIMEOUT))
    agent = RoleServer("agent", agent_dir, dict(common, TTSTACK_DATA_DIR=str(agent_dir), TTSTACK_ENGINES="qemu"),
                       KEY, []).start(120)
    ctl_dir = BASE / "controller"
    ctl_dir.mkdir()
    ctl = RoleServer("controller", ctl_dir, dict(common, TTSTACK_DATA_DIR=str(ctl_dir), TTSTACK_WORKERS="2"),
                     KEY, []).start(120)
    return agent, ctl


def ttstack_once(http, pub: str, isolated: bool) -> tuple[float, str]:
    env_id = f"bench-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    reply = http.post("/api/envs", json={"id": env_id, "ssh_keys": [pub], "lifetime": 3600,
                                         "isolated_network": isolated, "vms": [
        {"image": "debian-12", "engine": "qemu", "cpu": CPU, "mem": MEM, "disk": DISK}]})
    if reply.status_code != 202:
        raise SystemExit(f"create failed: {reply.status_code} {reply.text}")

    def ready() -> bool:
        env = http.get(f"/api/envs/{env_id}").json()
        if env["state"] == "failed":
            raise SystemExit(f"{env_id} failed: {env['error']}")
        ssh = env["vms"][0].get("ssh") or {}
        return bool(ssh.get("ready"))

    _wait(ready, f"{env_id} ssh.ready")
    elapsed = time.monotonic() - started
    accel = _accel_of(f"{env_id}-0")
    http.delete(f"/api/envs/{env_id}")
    _wait(lambda: http.get(f"/api/envs/{env_id}").status_code == 404, f"{env_id} deleted")
    return elapsed, accel


def _accel_of(vm_id: str) -> str:
    """What the agent booted the VM with (its KVM probe decides): "kvm" or "tcg", from the libvirt domain."""
    import xml.etree.ElementTree as ET

    import libvirt

    conn = libvirt.open("qemu:///system")
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().endswith(f"-{vm_id}"):
                return "kvm" if ET.fromstring(dom.XMLDesc(0)).get("type") == "kvm" else "tcg"
    finally:
        conn.close()
    raise SystemExit(f"no libvirt domain of {vm_id}")


def bare_once(image_dir: Path, pub: str, accel: str) -> float:
    """A bare qemu boot of the same image to the SSH banner on its forwarded port."""
    from agent.cloudinit import build_seed
    from tests.conftest import free_port
    from ttproject.sshkeys import sends_banner

    meta = json.loads((image_dir / "image.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="bare-", dir=BASE))
    overlay = work / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", meta["format"], "-b",
                    str(image_dir / meta["disk"]), str(overlay), f"{DISK}M"], check=True)
    seed = build_seed(work / "seed.iso", f"bare-{uuid.uuid4().hex[:6]}", "bare", [pub])
    port = free_port()
    argv = ["qemu-system-x86_64", "-machine", f"pc,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(CPU), "-m", str(MEM), "-kernel", str(image_dir / meta["kernel"]),
            "-initrd", str(image_dir / meta["initrd"]), "-append", meta["cmdline"],
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci", "-display", "none", "-serial", f"file:{work / 'console.log'}",
            "-monitor", "none"]
    qemu_log = open(work / "qemu.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT)

    def answers() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"bare qemu exited {proc.returncode}: {(work / 'qemu.log').read_text()[-2000:]}")
        return sends_banner("127.0.0.1", port)

    try:
        _wait(answers, "bare qemu SSH banner")
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(30)
        qemu_log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--flat", action="store_true",
                        help="isolated_network false: the VM has only the user-mode NIC, like the bare boot "
                             "(default: the controller's default, a second NIC on the env's network)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a kill still stops the servers (finally below)
    import httpx

    agent_dir = BASE / "agent"
    agent_dir.mkdir()
    agent_dir.chmod(0o755)
    env = dict(os.environ, TTSTACK_DATA_DIR=str(agent_dir))
    subprocess.run([sys.executable, "-m", "ttproject.cli", "image", "build", "debian-12", "--engine", "qemu"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=3600)
    image_dir = agent_dir / "images" / "debian-12"
    pub = _ssh_key()
    servers = []
    try:
        agent, ctl = _servers(agent_dir)
        servers = [ctl, agent]
        http = httpx.Client(base_url=ctl.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        if http.post("/api/hosts", json={"addr": agent.addr, "api_key": KEY}).status_code != 201:
            raise SystemExit("registering the agent failed")
        ours, bare = [], []
        accel = ""
        for rep in range(args.reps):
            # ttstack first in even reps (the bare boot needs the accelerator the agent chose), bare first in
            # odd ones: whichever boots first reads the base image from disk, the other from the page cache
            if rep % 2 == 0:
                took, accel = ttstack_once(http, pub, not args.flat)
                ours.append(took)
                bare.append(bare_once(image_dir, pub, accel))
            else:
                bare.append(bare_once(image_dir, pub, accel))
                ours.append(ttstack_once(http, pub, not args.flat)[0])
            print(f"  bare qemu {bare[-1]:.1f} s, ttstack {ours[-1]:.1f} s", flush=True)
        o, b = statistics.median(ours), statistics.median(bare)
        net = "user-mode NIC only" if args.flat else "with the env network's NIC"
        print(f"debian-12 ({accel}, {CPU} vCPU, {MEM} MiB, {net}, {args.reps} rep(s)): POST /api/envs -> ssh.ready "
              f"{o:.1f} s; bare qemu-system boot -> SSH banner {b:.1f} s; ratio {o / b:.2f}x (goal <= 1.1x)")
    finally:
        for server in servers:
            server.stop()
        from tests.images.conftest import remove_domains_of

        remove_domains_of(agent_dir)
        shutil.rmtree(BASE, ignore_errors=True)


if __name__ == "__main__":
    main()

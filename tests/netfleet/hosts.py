"""Hosts of the test fleet: a network namespace each, with its own dockerd and one `ttstack agent`.

A host ``ttn-<run>-<i>`` has the address 10.233.X.(10+i) on its ``eth0``, the other end of a veth pair whose
root side hangs on the fleet's bridge. Its processes live in the v2 cgroup ``/ttn-<run>-<i>``: ``daemon``
(dockerd, its containerd and shims), ``agent`` (the agent and its daphne), ``aux`` (a link delayer), and the
containers under ``vms`` (dockerd's --cgroup-parent). Killing the host is one cgroup.kill.

Faults: `cut` (DROP in the host's namespace, or `how="link"`: the root-side link down), `slow` (every packet
the host sends held `delay` seconds, see nfdelay.py), `kill_agent`, `freeze_agent` (SIGSTOP-like: the
cgroup freezer; TCP still connects, nothing answers), `kill_dockerd`, and `heal` undoing each.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from .netns import (
    PREFIX,
    STATE_DIR,
    FleetError,
    Network,
    cgroup2_root,
    cgroup_kill,
    cgroup_layout_args,
    cgroup_remove,
    run,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT_PORT = 9100
IMAGE = "ttstack/tiny:latest"
# What a host's processes must not inherit from the test session: they are other machines.
PRIVATE_ENV = ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY", "DJANGO_SETTINGS_MODULE", "TTSTACK_ROLE",
               "DOCKER_HOST", "TTSTACK_SECRET_KEY")
CUT_RULES = (["raw", "PREROUTING", "-i", "eth0"], ["mangle", "POSTROUTING", "-o", "eth0"])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise FleetError(f"timed out after {timeout} s waiting for {what}")


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class NetHost:
    def __init__(self, net: Network, index: int, work: Path, api_key: str | None):
        self.net, self.index = net, index
        self.name = net.host_name(index)
        self.addr = net.host_addr(index)
        self.agent_addr = f"{self.addr}:{AGENT_PORT}"
        self.agent_url = f"http://{self.agent_addr}"
        self.api_key = api_key
        self.work = work
        self.data_dir = work / "agent"  # the agent's TTSTACK_DATA_DIR
        # Unix sockets and dockerd's exec-root need short paths (sun_path is 108 bytes).
        self.run_dir = STATE_DIR / f"{net.run_id}.d" / str(index)
        self.docker_url = f"unix://{self.run_dir / 'docker.sock'}"
        self.cgroup = cgroup2_root() / self.name
        self.dockerd: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.delayer: subprocess.Popen | None = None
        self.agent_env: dict = {}
        self.agent_args: list[str] = []
        self.cut_how: str | None = None
        self.frozen = False
        self.queue = 0

    def __repr__(self):
        return f"<NetHost {self.name} {self.addr}>"

    # ---------------------------------------------------------------------------------------- building

    def create(self):
        ns, peer, mask = self.name, f"{self.name}p", self.net.subnet.prefixlen
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", ns, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", ns])
        run(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
        run(["ip", "link", "set", ns, "master", self.net.bridge])
        run(["ip", "link", "set", ns, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{self.addr}/{mask}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for part in ("daemon", "agent", "aux"):
            (self.cgroup / part).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    def spawn(self, part: str, argv: list[str], *, env: dict | None = None, log: str, mounts: bool = False,
              stdout=None) -> subprocess.Popen:
        """Start `argv` inside the host: its namespace, cgroup part `part`; output to work/LOG.log."""
        fd = os.open(self.cgroup / part / "cgroup.procs", os.O_WRONLY)
        try:
            launcher = [sys.executable, "-m", "tests.netfleet.inhost", "--cgroup-fd", str(fd),
                        *(cgroup_layout_args() if mounts else []), "--", *argv]
            with open(self.work / f"{log}.log", "ab") as out:
                return subprocess.Popen(["ip", "netns", "exec", self.name, *launcher], pass_fds=[fd], cwd=ROOT,
                                        env=env or child_env(), stdout=stdout or out, stderr=out,
                                        start_new_session=True, umask=0o022)  # an operator's usual umask
        finally:
            os.close(fd)

    def exec(self, argv: list[str], **kwargs) -> str:
        """Run a command inside the host's network namespace (root's mounts) and return its output."""
        return run(["ip", "netns", "exec", self.name, *argv], **kwargs)

    @contextmanager
    def docker(self):
        """A docker SDK client of this host's daemon, closed afterwards."""
        import docker

        client = docker.DockerClient(base_url=self.docker_url, timeout=30)
        try:
            yield client
        finally:
            client.close()

    def containers(self) -> list:
        """Every container of this host's daemon (running or not); one removed between the list and its
        inspect is left out."""
        with self.docker() as client:
            return client.containers.list(all=True, ignore_removed=True)

    def start_dockerd(self, timeout: float = 60):
        _drop_stale_pidfile(self.run_dir / "exec" / "containerd" / "containerd.pid")
        config = self.run_dir / "daemon.json"
        config.write_text("{}\n")  # never the machine's /etc/docker/daemon.json
        argv = ["dockerd", "--config-file", str(config), "--data-root", str(self.work / "docker"),
                "--exec-root", str(self.run_dir / "exec"), "--pidfile", str(self.run_dir / "docker.pid"),
                "-H", self.docker_url, "--cgroup-parent", f"/{self.name}/vms"]
        self.dockerd = self.spawn("daemon", argv, log="dockerd", mounts=True)

        def answers():
            if self.dockerd.poll() is not None:
                raise FleetError(f"dockerd of {self.name} exited {self.dockerd.returncode}: {self.log('dockerd')}")
            try:
                with self.docker() as client:
                    return client.ping()
            except Exception:  # not listening yet
                return False

        wait_until(answers, timeout, f"dockerd of {self.name}", interval=0.2)

    def load_image(self, image: str = IMAGE):
        """`docker save` from the machine's daemon into `docker load` against this host's: never a pull."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", self.docker_url, "load"], stdin=save.stdout, capture_output=True,
                                timeout=120)
        save.stdout.close()
        if save.wait(60) != 0 or loaded.returncode != 0:
            raise FleetError(f"copying {image} into {self.name} failed: {save.stderr.read().decode()} "
                             f"{loaded.stderr.decode()}")

    def start_agent(self, *, args: list[str] | None = None, env: dict | None = None, wait: bool = True,
                    key: bool = True, timeout: float = 90) -> subprocess.Popen:
        """`ttstack agent --bind ADDR --port 9100` inside the host, with this host's docker and data dir."""
        if args is not None:
            self.agent_args = list(args)
        if env is not None:
            self.agent_env = dict(env)
        argv = [sys.executable, "-m", "ttproject.cli", "agent", "--bind", self.addr, "--port", str(AGENT_PORT),
                *(["--api-key", self.api_key] if key and self.api_key else []), *self.agent_args]
        environment = child_env(TTSTACK_DATA_DIR=self.data_dir, TTSTACK_DOCKER_URL=self.docker_url,
                                TTSTACK_ENGINES="docker", TTSTACK_PUBLISH_ADDR=self.addr, TTSTACK_BIND=self.addr,
                                **self.agent_env)
        self.agent = self.spawn("agent", argv, env=environment, log="agent")
        if wait:
            self.wait_agent(timeout)
        return self.agent

    def wait_agent(self, timeout: float = 90):
        def answers():
            if self.agent.poll() is not None:
                raise FleetError(f"agent of {self.name} exited {self.agent.returncode}: {self.log('agent')}")
            try:
                return bool(httpx.get(f"{self.agent_url}/api/health", timeout=1))  # any answer: it serves
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout, f"agent of {self.name}", interval=0.2)

    def agent_client(self, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.agent_url, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log(self, name: str = "agent", tail: int = 4000) -> str:
        try:
            return (self.work / f"{name}.log").read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------------------------------ faults

    def cut(self, how: str = "drop"):
        """No packet in or out any more: `drop` (iptables DROP in the host's namespace: calls time out),
        or `link` (the root-side veth down: like a pulled cable)."""
        if how == "link":
            run(["ip", "link", "set", self.name, "down"])
        elif how == "drop":
            for table, chain, *match in CUT_RULES:
                self.exec(_iptables("-I", table, chain, match, "DROP"))
        else:
            raise ValueError(f"cut how={how!r}: drop or link")
        self.cut_how = how

    def uncut(self):
        if self.cut_how == "link":
            run(["ip", "link", "set", self.name, "up"])
        elif self.cut_how == "drop":
            for table, chain, *match in CUT_RULES:
                self.exec(_iptables("-D", table, chain, match, "DROP"), check=False)
        self.cut_how = None

    def slow(self, delay: float, queue: int = 1):
        """Hold every packet the host sends for `delay` seconds (a `netem delay` of its link)."""
        if self.delayer is not None:
            raise FleetError(f"{self.name} is slowed already")
        self.delayer = self.spawn("aux", [sys.executable, "-m", "tests.netfleet.nfdelay", str(queue), str(delay)],
                                  log="nfdelay", stdout=subprocess.PIPE)
        if self.delayer.stdout.readline().strip() != b"ready":
            self.delayer.kill()
            self.delayer = None
            raise FleetError(f"the link delayer of {self.name} did not start: {self.log('nfdelay')}")
        self.exec(_iptables("-A", "mangle", "POSTROUTING", ["-o", "eth0"], "NFQUEUE", "--queue-num", str(queue),
                            "--queue-bypass"))
        self.queue = queue

    def unslow(self):
        if self.delayer is None:
            return
        self.exec(_iptables("-D", "mangle", "POSTROUTING", ["-o", "eth0"], "NFQUEUE", "--queue-num",
                            str(self.queue), "--queue-bypass"), check=False)
        self.delayer.kill()
        self.delayer.wait(10)
        self.delayer.stdout.close()
        self.delayer = None

    def kill_agent(self):
        """SIGKILL the agent and its children (a crash or power loss of the agent alone)."""
        self.thaw_agent()
        cgroup_kill(self.cgroup / "agent")
        if self.agent is not None:
            self.agent.wait(10)
        self.agent = None

    def freeze_agent(self):
        """Stop the agent's processes where they are: connections open, nothing answers."""
        (self.cgroup / "agent" / "cgroup.freeze").write_text("1")
        self.frozen = True

    def thaw_agent(self):
        if self.frozen:
            (self.cgroup / "agent" / "cgroup.freeze").write_text("0")
            self.frozen = False

    def kill_dockerd(self):
        """SIGKILL dockerd and its containerd, as in a daemon crash: the containers keep running under their
        shims (a dockerd started again cannot start while the old containerd holds its socket)."""
        for pid in (self.cgroup / "daemon" / "cgroup.procs").read_text().split():
            try:
                if not Path(f"/proc/{pid}/comm").read_text().startswith("containerd-shim"):
                    os.kill(int(pid), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        if self.dockerd is not None:
            self.dockerd.wait(10)

    def heal(self):
        """Undo every fault: the link back, no delay, the agent thawed, dockerd and the agent running."""
        self.uncut()
        self.unslow()
        self.thaw_agent()
        if self.dockerd is None or self.dockerd.poll() is not None:
            self.start_dockerd()
        if self.agent is None or self.agent.poll() is not None:
            self.start_agent()

    def destroy(self):
        """Everything of this host gone, whatever state it is in (its processes killed as one)."""
        errors = []
        for step in (self.unslow, self.thaw_agent, lambda: cgroup_remove(self.name),
                     lambda: run(["ip", "netns", "del", self.name], check=False),
                     lambda: run(["ip", "link", "del", self.name], check=False)):
            try:
                step()
            except Exception as exc:  # go on: the next steps free the rest
                errors.append(f"{exc}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.work / "docker", ignore_errors=True)
        if errors:
            raise FleetError(f"tearing down {self.name}: {'; '.join(errors)}")


def _drop_stale_pidfile(path: Path):
    """dockerd reuses the containerd a pid file names while that pid exists: a killed one stays a zombie here
    (PID 1 of this machine does not reap orphans), so the file of a dead containerd must go first."""
    try:
        pid = int(path.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, IndexError):
        state = "gone"
    if state in ("Z", "X", "gone"):
        path.unlink(missing_ok=True)


def _iptables(op: str, table: str, chain: str, match: list[str], target: str, *target_args: str) -> list[str]:
    return ["iptables", "-w", "-t", table, op, chain, *match, "-m", "comment", "--comment", f"{PREFIX}fault",
            "-j", target, *target_args]


class Fleet:
    """A network and its hosts; `destroy()` removes all of it (also what a failed start left)."""

    def __init__(self, work: Path):
        self.work = work
        self.net = Network.create()
        self.hosts: list[NetHost] = []

    def add_hosts(self, count: int, *, keys: bool = True, agents: bool = True, image: str | None = IMAGE,
                  agent_env: dict | None = None) -> list[NetHost]:
        start = len(self.hosts)
        new = [NetHost(self.net, start + i + 1, self.work / f"h{start + i + 1}",
                       f"agent-key-{self.net.run_id}-{start + i + 1}" if keys else None) for i in range(count)]
        self.hosts += new

        def build(host: NetHost):
            host.create()
            host.start_dockerd()
            if image:
                host.load_image(image)
            if agents:
                host.start_agent(env=agent_env or {})

        with ThreadPoolExecutor(len(new)) as pool:
            list(pool.map(build, new))
        return new

    def register(self, client: httpx.Client, hosts: list[NetHost] | None = None) -> dict[str, int]:
        """POST /api/hosts for each host with its own key; {host name: controller's host id}."""
        ids = {}
        for host in hosts or self.hosts:
            body = {"addr": host.agent_addr, **({"api_key": host.api_key} if host.api_key else {})}
            reply = client.post("/api/hosts", json=body)
            if reply.status_code != 201:
                raise FleetError(f"registering {host.name}: {reply.status_code} {reply.text}")
            ids[host.name] = reply.json()["id"]
        return ids

    def destroy(self):
        errors = []
        for host in self.hosts:
            try:
                host.destroy()
            except FleetError as exc:
                errors.append(str(exc))
        cgroup_root = cgroup2_root()
        for host in self.hosts:  # a host whose create() failed half-way
            if (cgroup_root / host.name).exists():
                errors.append(f"cgroup {host.name} left behind")
        self.net.destroy()
        shutil.rmtree(STATE_DIR / f"{self.net.run_id}.d", ignore_errors=True)
        if errors:
            raise FleetError("; ".join(errors))

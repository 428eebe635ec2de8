"""Network namespaces for tests: real `ip netns`, veth pairs, and programs run inside them (argument lists).

Every namespace is named tta-<test id>-<role> and removed at teardown, with whatever runs in it, even when
the test failed. Needs root (the agent runs as root too); under CI=true a machine without it fails the test.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import CI, ROOT

PREFIX = "tta-"

# A TCP server answering every connection with "<label> <client address>".
LISTENER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    conn.sendall(f"{sys.argv[3]} {peer[0]}".encode())
    conn.close()
"""

# Open a TCP connection and print what the server says; exit 1 when no connection is made in time.
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
        print(conn.recv(200).decode())
except OSError as exc:
    print(f"no connection: {exc}")
    sys.exit(1)
"""


def _clean_env() -> dict:
    """The environment of programs run in a namespace: this checkout importable, the real tools on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTSTACK_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


class Netns:
    def __init__(self, name: str):
        self.name = name
        self.processes: list[subprocess.Popen] = []

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, check=check, timeout=timeout,
                              env=_clean_env())

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True, text=True)

    def python(self, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-c", script, *args, check=check)

    def listen(self, addr: str, port: int, label: str) -> None:
        proc = subprocess.Popen(self.argv(sys.executable, "-c", LISTENER, addr, str(port), label),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
        self.processes.append(proc)
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError(f"listener {addr}:{port} in {self.name} did not start: {proc.stderr.read()}")

    def connect(self, addr: str, port: int, timeout: float = 3) -> str | None:
        """What the server at addr:port answers, None when no connection could be made."""
        done = self.python(CONNECT, addr, str(port), str(timeout), check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def address(self, device: str, cidr: str, gateway: str | None = None) -> None:
        self.ip("addr", "add", cidr, "dev", device)
        self.ip("link", "set", device, "up")
        if gateway:
            self.ip("route", "add", "default", "via", gateway)

    def veth(self, name: str, peer: Netns, peer_name: str) -> None:
        """A veth pair: `name` here, `peer_name` in `peer`."""
        subprocess.run(["ip", "link", "add", name, "netns", self.name, "type", "veth", "peer", "name", peer_name,
                        "netns", peer.name], check=True, capture_output=True, text=True)

    def stop(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()


def require_netns() -> None:
    """Fail under CI=true, skip elsewhere, when network namespaces cannot be made here."""
    name = f"{PREFIX}probe-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if done.returncode == 0:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        return
    message = f"network namespaces are required but cannot be made ({done.stderr.strip()})"
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def namespaces():
    """Factory: namespaces("host") -> a fresh Netns; all of them are removed at teardown."""
    require_netns()
    made: list[Netns] = []
    test_id = uuid.uuid4().hex[:6]

    def make(role: str) -> Netns:
        ns = Netns(f"{PREFIX}{test_id}-{role}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, text=True)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    yield make
    for ns in made:
        ns.stop()
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)

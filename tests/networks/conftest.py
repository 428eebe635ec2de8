"""Fixtures of the network tests: agents whose every host object is removed afterwards, and an "outside"
listener in a network namespace of the test's own (ttw-*), routed from the host, that counts connections."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid

import pytest

from tests.agent.conftest import agent_server, docker_tiny  # noqa: F401 - fixtures used here
from tests.agent.netns import Netns, require_netns
from tests.agent.test_tiny_guest import ssh_key, tiny, workroot  # noqa: F401 - fixtures of the qemu tests
from tests.networks.hostobjects import clean_up

PREFIX = "ttw-"

# Accept connections forever; one line "conn" per connection on stdout.
COUNTING_LISTENER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(128)
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    print("conn", peer[0], flush=True)
    conn.close()
"""


class Outside:
    """A listener at `addr`:`port` in its own namespace, reached from the host through a veth pair."""

    def __init__(self, index: int):
        tag = uuid.uuid4().hex[:6]
        self.ns = Netns(f"{PREFIX}{tag}-out")
        self.host_end = f"{PREFIX}{tag}h"
        self.addr, host_addr = f"10.254.{index}.1", f"10.254.{index}.2"
        self.port = 9000
        subprocess.run(["ip", "netns", "add", self.ns.name], check=True, capture_output=True)
        self.ns.ip("link", "set", "lo", "up")
        subprocess.run(["ip", "link", "add", self.host_end, "type", "veth", "peer", "name", "out0", "netns",
                        self.ns.name], check=True, capture_output=True)
        subprocess.run(["ip", "addr", "add", f"{host_addr}/30", "dev", self.host_end], check=True)
        subprocess.run(["ip", "link", "set", self.host_end, "up"], check=True)
        self.ns.address("out0", f"{self.addr}/30", gateway=host_addr)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(self.ns.argv(sys.executable, "-c", COUNTING_LISTENER, self.addr,
                                                  str(self.port)), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    @property
    def connections(self) -> int:
        return sum(1 for line in self.lines if line.startswith("conn"))

    def close(self):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["ip", "link", "delete", self.host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns.name], capture_output=True)


@pytest.fixture
def outside():
    require_netns()
    made = []

    def make() -> Outside:
        made.append(Outside(100 + len(made) + (uuid.uuid4().int % 50) * 2))
        return made[-1]

    yield make
    for out in made:
        out.close()


@pytest.fixture
def agent(agent_server):  # noqa: F811
    """Factory: a real agent (engines= as agent_server); all it made on the host is removed afterwards."""
    started = []

    def start(**kwargs):
        server = agent_server(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        host_id_file = server.data_dir / "host_id"
        with contextlib.suppress(FileNotFoundError):
            clean_up(host_id_file.read_text().strip(), server.data_dir)


def host_id_of(server) -> str:
    return (server.data_dir / "host_id").read_text().strip()

"""Fixtures of the namespace test fleet (docs/testing.md): real hosts as network namespaces on this machine.

- `netfleet(n, ...)`: a Fleet of n hosts (namespace, own dockerd with ttstack/tiny loaded, own agent bound to
  the host's address with its own key); all of it removed at teardown, whatever the test did.
- `controller(env=...)`: a `ttstack controller` (web + worker + fleet loop) in the root namespace on
  127.0.0.1, with the operator key OPERATOR_KEY; it reaches the hosts only at their addresses.
- `services`: a factory of further ttstack processes (web, worker, agent-less) for scale-out layouts.

Missing capabilities (root, iproute2 with netns, iptables, dockerd, a cgroup2 hierarchy, the main docker
daemon with ttstack/tiny) skip the tests, and FAIL them under CI=true (tests/conftest.py::require).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CI, require

from .hosts import Fleet, NetHost
from .netns import cgroup2_root, sweep
from .services import Services

OPERATOR_KEY = "operator-key-netfleet"


def _netfleet_missing() -> str | None:
    if os.geteuid() != 0:
        return "the namespace fleet must run as root"
    for tool in ("ip", "iptables", "dockerd", "docker", "unshare", "mount"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "ip netns does not work here"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    return None


def require_netfleet():
    """Like tests.conftest.require: skip when the namespace fleet cannot run here, fail under CI=true."""
    require("docker")
    why = _netfleet_missing()
    if why is None:
        return
    if CI:
        pytest.fail(f"the namespace test fleet cannot run ({why}) — CI must provide it", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def _swept():
    """Once per session: remove what a crashed earlier run left (namespaces, links, cgroups, rules)."""
    require_netfleet()
    for line in sweep():
        print(f"netfleet: swept leftovers of {line}")


@pytest.fixture
def netfleet(_swept, docker_client, tmp_path):
    """Factory: netfleet(3) -> Fleet with 3 hosts ready; netfleet(2, agents=False) without agents."""
    fleets: list[Fleet] = []

    def make(count: int = 3, **kwargs) -> Fleet:
        fleet = Fleet(tmp_path / f"fleet{len(fleets)}")
        fleets.append(fleet)
        fleet.add_hosts(count, **kwargs)
        return fleet

    yield make
    for fleet in fleets:
        for host in fleet.hosts:  # shown by pytest only when the test failed
            print(f"--- {host.name} ({host.addr}) agent log ---\n{host.log('agent', 2500)}")
        fleet.destroy()


@pytest.fixture
def controller(role_server):
    """Factory: controller(env={...}) -> a started RoleServer of the controller with OPERATOR_KEY."""

    def start(env: dict | None = None, **kwargs):
        settings = {"TTSTACK_PLACEMENT": "spread", "TTSTACK_HEARTBEAT": "1", "TTSTACK_HOST_TIMEOUT": "4"}
        settings.update(env or {})
        return role_server("controller", api_key=OPERATOR_KEY, env=settings, **kwargs)

    return start


@pytest.fixture
def services(tmp_path):
    """Factory of extra ttstack processes in the root namespace; all stopped at teardown."""
    made = Services(tmp_path / "services")
    yield made
    made.stop_all()


def host_of(fleet: Fleet, addr: str) -> NetHost:
    return next(h for h in fleet.hosts if h.agent_addr == addr or h.addr == addr)


__all__ = ["OPERATOR_KEY", "host_of", "require_netfleet", "Path"]

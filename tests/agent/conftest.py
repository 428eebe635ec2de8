"""Fixtures of the agent API tests: the docker-tiny image, agent servers, and cleanup of what they made."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.conftest import require

TINY = "ttstack/tiny:latest"


def docker_client():
    import docker

    return docker.from_env(timeout=60)


def remove_containers_of(host_id: str) -> None:
    """Every container labelled for this agent (all states): its guests and their network holders."""
    if not host_id:
        return
    client = docker_client()
    for label in (f"ttstack.host_id={host_id}", f"ttstack.netns.host_id={host_id}"):
        for container in client.containers.list(all=True, filters={"label": [label]}):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)


def containers_of(host_id: str) -> list:
    return docker_client().containers.list(all=True, filters={"label": [f"ttstack.host_id={host_id}"]})


@pytest.fixture(scope="session")
def docker_tiny():
    """ttstack/tiny:latest, built locally once (no registry is reachable)."""
    require("docker")
    from agent.imagebuild.docker_tiny import build_docker_tiny

    return build_docker_tiny(log=lambda _line: None)


@pytest.fixture
def agent_server(role_server, docker_tiny):
    """Factory: a real `ttstack agent` subprocess (docker only unless engines= says otherwise); every
    container it made is removed at teardown, even when the test failed."""
    started = []

    def start(engines: str = "docker", env: dict | None = None, data_dir: Path | None = None, **kwargs):
        server = role_server("agent", env={"TTSTACK_ENGINES": engines, "TTSTACK_STOP_TIMEOUT": "5",
                                           **(env or {})}, data_dir=data_dir, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        host_id = (server.data_dir / "host_id").read_text().strip() if (server.data_dir / "host_id").exists() \
            else ""
        remove_containers_of(host_id)


@pytest.fixture(scope="session", autouse=True)
def _close_engine_connections():
    """Close the registry's engine connections (libvirt's __del__ complains at interpreter exit otherwise)."""
    yield
    from agent import engines

    engines.reset()

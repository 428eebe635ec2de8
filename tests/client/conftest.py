"""Fixtures of the client tests: the `ttstack` client run as a user runs it (a subprocess with its own HOME
and XDG_CONFIG_HOME), against a real controller and a real docker agent (tests/conftest.py's role_server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import agent_server, docker_tiny  # noqa: F401 - fixtures reused here
from tests.conftest import ROOT

# Variables of the developer's own shell that would point the client elsewhere.
CLIENT_VARS = ("TTSTACK_URL", "TTSTACK_TOKEN", "TTSTACK_PROFILE", "TTSTACK_DEBUG", "XDG_CONFIG_HOME", "HOME")


class Cli:
    """The `ttstack` client with a home of its own: config in XDG_CONFIG_HOME, keys in HOME/.ssh."""

    def __init__(self, root: Path):
        self.home = root / "home"
        self.config_home = root / "xdg"
        (self.home / ".ssh").mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
        self.env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.config_home), PYTHONPATH=str(ROOT))
        self.argv = [sys.executable, "-m", "ttproject.cli"]

    @property
    def config_file(self) -> Path:
        return self.config_home / "ttstack" / "config.toml"

    def run(self, *args: str, input: str | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv, *args], input=input, capture_output=True, text=True, cwd=ROOT,
                              env={**self.env, **(env or {})}, timeout=timeout, stdin=None if input else
                              subprocess.DEVNULL)

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, f"ttstack {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, **kwargs):
        return json.loads(self.ok(*args, "-o", "json", **kwargs).stdout)

    def keygen(self, name: str = "id_ed25519") -> Path:
        key = self.home / ".ssh" / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "client-test", "-f", str(key)],
                       check=True)
        return key


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def env_name():
    """A unique environment name per call (the test's containers are removed with its agent)."""
    return lambda prefix="ttc": f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fleet(role_server, agent_server, cli):  # noqa: F811 - the fixture imported above
    """(controller, agent): a real controller and a docker agent, the host added and the client logged in
    with `ttstack host add` and `ttstack login`."""
    agent = agent_server()
    controller = role_server("controller")
    cli.ok("login", controller.url, "--token", controller.api_key)
    cli.ok("host", "add", agent.addr, "--key", agent.api_key)
    return controller, agent


class _Forward(BaseHTTPRequestHandler):
    """Forwards plain HTTP to the controller and refuses WebSocket upgrades, as a proxy without WebSocket
    support would."""

    upstream = ""

    def _forward(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_error(502, "this proxy does not carry WebSockets")
            return
        length = int(self.headers.get("Content-Length") or 0)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        reply = httpx.request(self.command, self.upstream + self.path, headers=headers,
                              content=self.rfile.read(length) if length else None, timeout=60)
        self.send_response(reply.status_code)
        for key in ("Content-Type",):
            if key in reply.headers:
                self.send_header(key, reply.headers[key])
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = do_DELETE = do_PATCH = _forward

    def log_message(self, *args):
        pass


@pytest.fixture
def no_websocket_proxy():
    """Factory: proxy(upstream_url) -> the URL of a proxy on 127.0.0.1 that refuses WebSockets."""
    servers = []

    def start(upstream: str) -> str:
        handler = type("Forward", (_Forward,), {"upstream": upstream})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()

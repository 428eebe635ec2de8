"""The token on every /api/* route and on the WebSocket, Host and Origin checks, the token file."""

import stat
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

ROUTES = [
    ("GET", "/api/health"), ("GET", "/api/settings/github-token"), ("POST", "/api/settings/github-token"),
    ("GET", "/api/tart/version"), ("GET", "/api/vms/available-images"), ("GET", "/api/vms/categorized"),
    ("GET", "/api/vms"), ("POST", "/api/vms/refresh"), ("GET", "/api/vms/dev"), ("GET", "/api/vms/dev/config"),
    ("POST", "/api/vms/dev/start"), ("POST", "/api/vms/dev/stop"), ("POST", "/api/vms/dev/delete"),
    ("POST", "/api/vms/pull"), ("POST", "/api/vms/dev/clone"), ("POST", "/api/vms/create"),
    ("GET", "/api/tasks/active"), ("GET", "/api/tasks/00000000-0000-0000-0000-000000000000"),
]


def test_token_file_is_private(localvm):
    token_file = Path(localvm.server.env["TTSTACK_TOKEN_DIR"]) / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert len(localvm.token) >= 32


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_api_route_needs_the_token(localvm, method, path):
    for headers in ({}, {"X-Local-Token": "wrong-" + localvm.token}, {"X-Local-Token": ""}):
        reply = httpx.request(method, localvm.url + path, headers=headers, json={})
        assert reply.status_code in (401, 403), (path, headers, reply.text)
        assert reply.json()["detail"]


def test_foreign_host_header_is_refused(localvm):
    reply = httpx.get(localvm.url + "/api/vms", headers={"Host": "evil.example", "X-Local-Token": localvm.token})
    assert reply.status_code == 400
    assert "evil.example" in reply.json()["detail"]
    for host in (f"127.0.0.1:{localvm.port}", f"localhost:{localvm.port}"):
        ok = httpx.get(localvm.url + "/api/vms", headers={"Host": host, "X-Local-Token": localvm.token})
        assert ok.status_code == 200


def _ws(localvm, task_id: str, *, token: str | None, origin: str | None):
    query = f"?token={token}" if token is not None else ""
    return connect(f"ws://127.0.0.1:{localvm.port}/ws/tasks/{task_id}{query}", origin=origin, open_timeout=10)


def test_websocket_needs_token_and_local_origin(localvm, api):
    task = localvm.run_task("/api/vms/second/stop")
    local = f"http://127.0.0.1:{localvm.port}"
    with _ws(localvm, task["id"], token=localvm.token, origin=local) as ws:
        assert ws.recv(timeout=10)
    # A script or CLI sends no Origin (only browsers do): with the token it is let in, as the seed's example.
    with _ws(localvm, task["id"], token=localvm.token, origin=None) as ws:
        assert ws.recv(timeout=10)
    for token, origin in ((localvm.token, "http://evil.example"), (None, local), ("wrong", local),
                          (None, None), (localvm.token, f"http://evil.example:{localvm.port}")):
        with pytest.raises(InvalidStatus) as refused:
            _ws(localvm, task["id"], token=token, origin=origin)
        assert refused.value.response.status_code == 403

"""The token on every /api/* route and on the WebSocket, Host and Origin checks, the token file."""

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ROOT

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


# ------------------------------------------------------------- the page's session (one-time sign-in URL)


def _new_login_url(localvm) -> str:
    """What a user runs for a new sign-in link: `ttstack manage localvm page_url`."""
    done = subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "localvm", "page_url", "--port",
                           str(localvm.port)], env=localvm.server.env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def _signed_in(localvm) -> tuple[httpx.Client, str]:
    """A browser-like client signed in through a login URL, and the CSRF token of its page."""
    browser = httpx.Client(base_url=localvm.url, timeout=30)
    reply = browser.get(_new_login_url(localvm), follow_redirects=True)
    assert reply.status_code == 200 and str(reply.url) == f"{localvm.url}/", reply.text[:300]
    csrf = re.search(r'data-csrf="([^"]+)"', reply.text)
    assert csrf, reply.text[:500]
    return browser, csrf.group(1)


def test_the_login_url_gives_an_httponly_strict_session_and_works_once(localvm):
    url = _new_login_url(localvm)
    with httpx.Client(base_url=localvm.url, timeout=30) as browser:
        reply = browser.get(url)
        assert reply.status_code == 302 and reply.headers["location"] == "/"
        cookie = reply.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie, cookie
        page = browser.get("/").text
        assert localvm.token not in page and url.split("token=")[1] not in page
    with httpx.Client(base_url=localvm.url, timeout=30) as stranger:
        assert stranger.get(url).status_code == 403  # used up
        assert stranger.get("/api/vms").status_code in (401, 403)


def test_the_session_reaches_the_api_with_csrf_for_unsafe_methods(localvm):
    browser, csrf = _signed_in(localvm)
    try:
        assert browser.get("/api/vms").status_code == 200
        refused = browser.post("/api/vms/refresh", json={})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        assert browser.post("/api/vms/refresh", json={}, headers={"X-CSRFToken": csrf}).status_code in (200, 202)
    finally:
        browser.close()


def test_the_session_opens_the_task_websocket_from_the_page_only(localvm):
    browser, _csrf = _signed_in(localvm)
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    browser.close()
    task = localvm.run_task("/api/vms/second/stop")
    local = f"http://127.0.0.1:{localvm.port}"
    url = f"ws://127.0.0.1:{localvm.port}/ws/tasks/{task['id']}"
    with connect(url, origin=local, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["id"] == task["id"]
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="http://evil.example", additional_headers={"Cookie": cookie}, open_timeout=10)
    assert refused.value.response.status_code == 403

"""In-process tests of the page views (no browser): access rules, escaping, the token page, the
dashboard snapshot's shape and its constant query count, and the localvm page's token hand-out."""

import json

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from fleet.models import Environment, Host, Vm

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def make_env(env_id, owner, host, n_vms=1):
    env = Environment.objects.create(id=env_id, owner=owner, state="active", ssh_keys=["ssh-ed25519 AAAA secret"])
    for i in range(n_vms):
        Vm.objects.create(id=f"{env_id}-{i}", env=env, index=i, host=host, image="ttstack/tiny:latest",
                          engine="docker", cpu=1, mem=64, disk=100, state="running", port_map={"22": 20022})
    return env


@pytest.fixture
def host():
    return Host.objects.create(addr="127.0.0.1:9100", api_key="agent-secret", engines=["docker"], storage="file",
                               cpu_total=4, mem_total=4096, disk_total=10000,
                               images=[{"name": "tiny", "kind": "docker", "engines": ["docker"]}])


@pytest.fixture
def owners():
    return (User.objects.create_user("alice", password="pw-alice"),
            User.objects.create_user("bob", password="pw-bob"))


@pytest.mark.urls("ttproject.urls.controller")
class TestDashboard:
    def test_page_is_open_and_has_security_headers(self, client, host):
        reply = client.get("/")
        assert reply.status_code == 200
        assert reply["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in reply["Content-Security-Policy"]
        body = reply.content.decode()
        assert 'id="dashboard-data"' in body and "/static/js/dashboard.js" in body
        assert "<script>" not in body.replace('<script type="application/json"', "")  # no inline code

    def test_json_shape_and_no_secrets(self, client, host):
        make_env("e1", "alice", host)
        data = client.get("/dashboard.json").json()
        assert data["status"]["hosts"] == 1 and data["status"]["hosts_online"] == 1
        assert data["hosts"][0]["addr"] == "127.0.0.1:9100" and data["hosts"][0]["vms"] == 1
        assert data["envs"] == [{"id": "e1", "owner": "alice", "state": "active", "vm_count": 1,
                                 "expires_at": None, "created_at": data["envs"][0]["created_at"]}]
        assert data["images"][0]["name"] == "tiny"
        raw = json.dumps(data)
        assert "agent-secret" not in raw and "ssh-ed25519" not in raw and "20022" not in raw

    def test_constant_query_count(self, client, host):
        make_env("e1", "alice", host)
        with CaptureQueriesContext(connection) as small:
            client.get("/dashboard.json")
        for i in range(10):
            make_env(f"many{i}", "bob", host, n_vms=3)
            Host.objects.create(addr=f"10.0.0.{i}:9100")
        with CaptureQueriesContext(connection) as big:
            client.get("/dashboard.json")
        assert len(small) == len(big) <= 8

    def test_owner_label_is_escaped_in_the_embedded_snapshot(self, client, host):
        make_env("x", "</script><script>alert(1)</script>", host)
        body = client.get("/").content.decode()
        assert "<script>alert(1)" not in body
        assert "\\u003C/script\\u003E" in body


@pytest.mark.urls("ttproject.urls.controller")
class TestOwnerPages:
    def test_login_required(self, client):
        for url in ("/my/", "/my/new", "/my/token", "/my/envs/x"):
            reply = client.get(url)
            assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/")

    def test_login_page_and_sign_in(self, client, owners):
        assert client.get("/accounts/login/").status_code == 200
        reply = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
        assert reply.status_code == 302 and reply["Location"] == "/my/"

    def test_owner_sees_only_own_envs(self, client, owners, host):
        make_env("alice-env", "alice", host)
        make_env("bob-env", "bob", host)
        client.force_login(owners[0])
        body = client.get("/my/").content.decode()
        assert "alice-env" in body and "bob-env" not in body
        assert client.get("/my/envs/alice-env").status_code == 200
        assert client.get("/my/envs/bob-env").status_code == 404

    def test_new_form_lists_fleet_images(self, client, owners, host):
        client.force_login(owners[0])
        body = client.get("/my/new").content.decode()
        assert 'id="env-form"' in body and '<option value="tiny">' in body

    def test_token_created_shown_once_and_rotated(self, client, owners):
        client.force_login(owners[0])
        assert "no token yet" in client.get("/my/token").content.decode()
        client.post("/my/token")
        first = Token.objects.get(user=owners[0]).key
        assert first in client.get("/my/token").content.decode()
        assert first not in client.get("/my/token").content.decode()  # shown once
        client.post("/my/token")
        second = Token.objects.get(user=owners[0]).key
        assert second != first and not Token.objects.filter(key=first).exists()

    def test_token_post_needs_csrf(self, owners):
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        strict.force_login(owners[0])
        assert strict.post("/my/token").status_code == 403

    def test_logout_is_post(self, client, owners):
        client.force_login(owners[0])
        assert client.post("/accounts/logout/").status_code == 302
        assert client.get("/my/").status_code == 302


@pytest.mark.urls("tests.e2e.urls_localvm")
class TestLocalvmPage:
    def test_token_only_for_loopback(self, client, tmp_path, monkeypatch):
        monkeypatch.setenv("TTSTACK_TOKEN_DIR", str(tmp_path))
        from localvm import auth

        auth._expected.cache_clear()
        token = auth.ensure_token()
        local = client.get("/", HTTP_HOST="127.0.0.1:8000", REMOTE_ADDR="127.0.0.1")
        assert local.status_code == 200 and f'data-token="{token}"' in local.content.decode()
        assert "no-store" in local["Cache-Control"]
        remote = client.get("/", HTTP_HOST="127.0.0.1:8000", REMOTE_ADDR="192.0.2.7")
        assert token not in remote.content.decode() and 'id="not-local"' in remote.content.decode()

    def test_no_token_for_a_foreign_host_name(self, client, tmp_path, monkeypatch):
        # The localvm role's ALLOWED_HOSTS refuses such a Host already; the view checks again by itself
        # (this in-process test runs with the controller's ALLOWED_HOSTS = *).
        monkeypatch.setenv("TTSTACK_TOKEN_DIR", str(tmp_path))
        from localvm import auth

        auth._expected.cache_clear()
        token = auth.ensure_token()
        reply = client.get("/", HTTP_HOST="rebound.example:8000", REMOTE_ADDR="127.0.0.1")
        assert token not in reply.content.decode()

"""Owners' governance in-process: extend, lifetime limits, quotas, the event record, deadlines, list pages.
Jobs are not run here (their tasks stay pending); tests/fleet/test_event_stream.py runs a real fleet."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from fleet import deadlines
from fleet.choices import EnvState, OnExpiry
from fleet.models import Environment, Event, Quota
from ttproject.tasks.models import Task

from .helpers import env_body
from .test_api import api, make_host  # noqa: F401 - the operator's client fixture

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.urls("ttproject.urls.controller")]
DAY = 86400


def owner_client(name: str) -> APIClient:
    user = User.objects.create_user(name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def alice(api):  # noqa: F811 - the fixture imported above; it sets the API key
    return owner_client("alice")


@pytest.fixture
def bob(api):  # noqa: F811
    return owner_client("bob")


def big_host():
    return make_host(cpu=1000, mem=1 << 30, disk=1 << 40)


def test_owner_extends_her_env_up_to_the_limit(alice, bob, api):  # noqa: F811
    big_host()
    assert alice.post("/api/envs", env_body("a1"), format="json").status_code == 202
    before = Environment.objects.get(pk="a1").expires_at

    r = alice.post("/api/envs/a1/extend", {"lifetime": 2 * DAY}, format="json")
    assert r.status_code == 200, r.json()
    after = Environment.objects.get(pk="a1").expires_at
    assert after - before > timedelta(days=1, hours=23) and r.json()["expires_at"]

    too_long = alice.post("/api/envs/a1/extend", {"lifetime": 8 * DAY}, format="json")
    assert too_long.status_code == 422
    assert "604800 s (7 days)" in too_long.json()["detail"] and "TTSTACK_MAX_LIFETIME" in too_long.json()["detail"]
    at = (timezone.now() + timedelta(days=30)).isoformat()
    assert alice.post("/api/envs/a1/extend", {"expires_at": at}, format="json").status_code == 422
    never = alice.post("/api/envs/a1/extend", {"lifetime": 0}, format="json")
    assert never.status_code == 422 and "operators only" in never.json()["detail"]
    assert Environment.objects.get(pk="a1").expires_at == after  # refusals moved nothing

    assert bob.post("/api/envs/a1/extend", {"lifetime": 3600}, format="json").status_code == 404
    for bad in ({}, {"lifetime": 60, "expires_at": at}, {"lifetime": -1},
                {"expires_at": (timezone.now() - timedelta(hours=1)).isoformat()}):
        assert alice.post("/api/envs/a1/extend", bad, format="json").status_code == 400, bad

    # operators have no limit, and may make an env never expire
    assert api.post("/api/envs/a1/extend", {"lifetime": 400 * DAY}, format="json").status_code == 200
    r = api.post("/api/envs/a1/extend", {"lifetime": 0}, format="json")
    assert r.status_code == 200 and r.json()["expires_at"] is None and r.json()["lifetime"] == 0


def test_owners_create_within_the_lifetime_limit(alice, settings):
    big_host()
    r = alice.post("/api/envs", {**env_body("long"), "lifetime": 8 * DAY}, format="json")
    assert r.status_code == 422 and "TTSTACK_MAX_LIFETIME" in r.json()["detail"]
    r = alice.post("/api/envs", {**env_body("never"), "lifetime": 0}, format="json")
    assert r.status_code == 422 and "TTSTACK_OWNERS_NEVER_EXPIRE" in r.json()["detail"]
    assert not Environment.objects.exists() and not Task.objects.exists()
    settings.FLEET_OWNERS_NEVER_EXPIRE = True
    assert alice.post("/api/envs", {**env_body("never"), "lifetime": 0}, format="json").status_code == 202
    assert Environment.objects.get(pk="never").expires_at is None


def test_extend_of_a_deleting_env_is_409(api):  # noqa: F811
    big_host()
    api.post("/api/envs", env_body("d"), format="json")
    api.delete("/api/envs/d")
    assert api.post("/api/envs/d/extend", {"lifetime": 60}, format="json").status_code == 409


# ------------------------------------------------------------------------------------------ quotas


def test_quotas_limit_owners_not_operators(api, alice, bob):  # noqa: F811
    big_host()
    assert api.put("/api/quotas/*", {"envs": 2, "cpu": 3}, format="json").status_code == 200
    assert api.put("/api/quotas/alice", {"cpu": 4}, format="json").status_code == 200  # her own cpu, default envs
    assert alice.put("/api/quotas/alice", {"cpu": 400}, format="json").status_code == 403
    assert alice.get("/api/quotas").status_code == 403

    assert alice.post("/api/envs", env_body("a1", cpu=3), format="json").status_code == 202
    r = alice.post("/api/envs", env_body("a2", cpu=2), format="json")
    assert r.status_code == 422
    assert r.json()["detail"] == "quota of alice exceeded — cpu: requested 2, in use 3, limit 4"
    assert r.json()["errors"]["quota"] == {"cpu": {"limit": 4, "requested": 2, "in_use": 3}}
    assert not Environment.objects.filter(pk="a2").exists()
    assert alice.post("/api/envs", env_body("a2", cpu=1), format="json").status_code == 202
    r = alice.post("/api/envs", env_body("a3", cpu=1), format="json")
    assert r.status_code == 422 and "envs: requested 1, in use 2, limit 2" in r.json()["detail"]

    me = alice.get("/api/quotas/me").json()
    assert me["owner"] == "alice"
    assert me["cpu"] == {"limit": 4, "used": 4, "left": 0} and me["envs"] == {"limit": 2, "used": 2, "left": 0}
    assert me["mem"] == {"limit": None, "used": 128, "left": None}
    assert bob.get("/api/quotas/me").json()["cpu"] == {"limit": 3, "used": 0, "left": 3}  # the default

    # a deleting environment no longer counts; operators are never limited
    alice.delete("/api/envs/a1")
    assert alice.post("/api/envs", env_body("a3", cpu=1), format="json").status_code == 202
    assert api.post("/api/envs", {**env_body("ops", cpu=50), "owner": "alice"}, format="json").status_code == 202
    assert {q["owner"] for q in api.get("/api/quotas").json()} == {"*", "alice"}
    assert api.delete("/api/quotas/alice").status_code == 204 and api.get("/api/quotas/alice").status_code == 404
    assert api.put("/api/quotas/*", {"cpu": -1}, format="json").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_exceed_the_quota(api):  # noqa: F811
    """20 creates of one owner at once on PostgreSQL: exactly her quota passes, each refusal names it."""
    import threading

    from django.db import connection, connections

    from tests.conftest import require

    require("postgres")
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL pass runs this (-m postgres with DATABASE_URL)")
    big_host()
    owner_client("alice")
    token = Token.objects.get(user__username="alice").key
    Quota.objects.create(owner="alice", envs=5, cpu=9)  # cpu binds: 4 environments of 2 vCPUs
    start, replies = threading.Barrier(20), {}

    def create(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        body = env_body(f"race-{i}", cpu=2)
        try:
            start.wait(30)
            replies[i] = client.post("/api/envs", body, format="json")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in replies.values())
    assert codes == [202] * 4 + [422] * 16, codes
    assert Environment.objects.filter(owner="alice").count() == 4
    for r in replies.values():
        if r.status_code == 422:
            assert r.json()["detail"] == "quota of alice exceeded — cpu: requested 2, in use 8, limit 9"


# ---------------------------------------------------------------------------------- the event record


def test_mutations_and_state_changes_are_recorded_and_owners_see_their_own(api, alice, bob):  # noqa: F811
    host = big_host()
    alice.post("/api/envs", env_body("a1"), format="json")
    bob.post("/api/envs", env_body("b1"), format="json")
    bob.post("/api/envs/a1/stop")  # someone else's: 404, recorded as bob's
    api.patch(f"/api/hosts/{host.id}", {"drain": True}, format="json")
    env = Environment.objects.get(pk="a1")
    env.set_state(EnvState.ACTIVE)
    api.delete("/api/envs/a1")

    seen = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in api.get("/api/events").json()]
    assert seen == [("alice", "env.create", "env/a1", "202"), ("bob", "env.create", "env/b1", "202"),
                    ("bob", "env.stop", "env/a1", "404"), ("operator", "host.update", f"host/{host.id}", "200"),
                    ("system", "env.state", "env/a1", "active"), ("system", "env.state", "env/a1", "deleting"),
                    ("operator", "env.delete", "env/a1", "202")]
    first = Event.objects.first()
    assert first.request_id and first.time and first.owner == "alice"
    mine = [(e["action"], e["outcome"]) for e in alice.get("/api/events").json()]
    assert mine == [("env.create", "202"), ("env.state", "active"), ("env.state", "deleting"), ("env.delete", "202")]
    assert [e["target"] for e in bob.get("/api/events").json()] == ["env/b1", "env/a1"]  # his create, his 404
    assert [e["outcome"] for e in api.get("/api/events?target=env/a1&type=env.state").json()] == ["active", "deleting"]
    assert [e["actor"] for e in api.get("/api/events?actor=operator").json()] == ["operator", "operator"]
    assert len(api.get("/api/events?type=env").json()) == 6
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert api.get("/api/events", {"since": later}).json() == []
    assert api.get("/api/events?since=yesterday").status_code == 400


def test_events_are_pruned_after_the_retention(settings):
    from fleet import events

    old = events.record("env.state", "env/x", outcome="active")
    Event.objects.filter(pk=old.pk).update(time=timezone.now() - timedelta(days=31))
    events.record("env.state", "env/y", outcome="active")
    assert events.prune() == 1 and list(Event.objects.values_list("target", flat=True)) == ["env/y"]
    settings.FLEET_EVENT_RETENTION = 0
    assert events.prune() == 1


# ------------------------------------------------------------------------------ deadlines and policy


def test_on_expiry_stop_stops_then_deletes_at_the_second_deadline(api, settings):  # noqa: F811
    big_host()
    settings.FLEET_EXPIRY_WARNING = 600
    settings.FLEET_STOPPED_GRACE = 3600
    api.post("/api/envs", {**env_body("keep"), "on_expiry": "stop", "lifetime": 900}, format="json")
    api.post("/api/envs", {**env_body("gone"), "lifetime": 900}, format="json")
    Environment.objects.update(state=EnvState.ACTIVE, operation=None)
    assert deadlines.enforce() == {"warned": [], "stopped": [], "deleted": []}

    Environment.objects.update(expires_at=timezone.now() + timedelta(seconds=300))  # inside the warning
    assert sorted(deadlines.enforce()["warned"]) == ["gone", "keep"]
    assert deadlines.enforce()["warned"] == []  # once per deadline
    warning = Event.objects.get(action="env.expiry_warning", target="env/keep")
    assert warning.owner == "alice" and warning.outcome.startswith("expires in ")

    Environment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert deadlines.enforce() == {"warned": [], "stopped": ["keep"], "deleted": ["gone"]}
    keep = Environment.objects.get(pk="keep")
    assert keep.state == EnvState.STOPPING and keep.delete_at > timezone.now() + timedelta(minutes=59)
    assert Task.objects.get(target="keep", action="fleet.env_stop")
    Environment.objects.filter(pk="keep").update(state=EnvState.STOPPED)
    assert deadlines.enforce()["deleted"] == []  # the disks are kept until the second deadline

    Environment.objects.filter(pk="keep").update(delete_at=timezone.now() - timedelta(seconds=1))
    assert deadlines.enforce()["deleted"] == ["keep"]
    assert Environment.objects.get(pk="keep").state == EnvState.DELETING


def test_extending_a_stopped_at_expiry_env_saves_it(api, settings):  # noqa: F811
    big_host()
    api.post("/api/envs", {**env_body("keep"), "on_expiry": "stop"}, format="json")
    Environment.objects.update(state=EnvState.STOPPED, operation=None,
                               expires_at=timezone.now() - timedelta(seconds=1))
    assert deadlines.enforce()["stopped"] == ["keep"]
    assert api.get("/api/envs/keep").json()["delete_at"]
    r = api.post("/api/envs/keep/extend", {"lifetime": 7200}, format="json")
    assert r.status_code == 200 and r.json()["delete_at"] is None and r.json()["on_expiry"] == OnExpiry.STOP
    assert deadlines.enforce() == {"warned": [], "stopped": [], "deleted": []}


# ------------------------------------------------------------------------------------- list pages


@pytest.mark.parametrize("path", ["/api/envs", "/api/hosts", "/api/tasks", "/api/events"])
def test_lists_page_with_limit_and_cursor(api, path):  # noqa: F811
    for i in range(5):
        make_host(f"127.0.0.1:{i + 1}", cpu=1000, mem=1 << 30, disk=1 << 40)
    for i in range(5):
        api.post("/api/envs", env_body(f"e{i}"), format="json")
    plain = api.get(path).json()
    assert isinstance(plain, list) and len(plain) >= 5
    seen, cursor = [], None
    while True:
        page = api.get(path, {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["results"]) <= 2
        seen += page["results"]
        cursor = page["next"]
        if cursor is None:
            break
    assert [row["id"] for row in seen] == [row["id"] for row in plain]
    assert api.get(path, {"limit": 0}).status_code == 400
    assert api.get(path, {"cursor": "bm9wZQ"}).status_code == 404  # as DRF's CursorPagination


def test_the_owners_page_shows_her_quota(alice, client):
    from django.contrib.auth.models import User

    Quota.objects.create(owner="*", envs=3)
    Quota.objects.create(owner="alice", cpu=8)
    big_host()
    alice.post("/api/envs", env_body("a1", cpu=2), format="json")
    client.force_login(User.objects.get(username="alice"))
    page = client.get("/my/").content.decode()
    assert "My quota" in page
    assert '<tr data-quota="cpu"><td>vCPUs</td><td>2</td>\n        <td>8</td></tr>' in page
    assert '<tr data-quota="envs"><td>Environments</td><td>1</td>\n        <td>3</td></tr>' in page
    assert '<td>Memory (MiB)</td><td>64</td>\n        <td>no limit</td>' in page

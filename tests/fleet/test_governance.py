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

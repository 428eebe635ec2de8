"""The controller's image routes in-process: what is refused before a task starts, and who may ask.
The spread itself runs against real agents in test_spread.py."""

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from fleet.models import Environment, Vm
from tests.fleet.test_api import api, make_host  # noqa: F401 - the fixture
from ttproject.tasks.models import Task

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.urls("ttproject.urls.controller")]
SHA = "ab" * 32


def test_spread_requests_are_checked_before_a_task_starts(api):  # noqa: F811
    assert api.post("/api/images", {"name": "alpine", "url": "http://127.0.0.1:1/a.qcow2", "sha256": SHA},
                    format="json").status_code == 422  # no host at all
    h1, h2 = make_host("127.0.0.1:1"), make_host("127.0.0.1:2")
    for body, code, words in [
        ({"name": "alpine"}, 400, "exactly one of url and source_host"),
        ({"name": "alpine", "url": "http://127.0.0.1:1/a.qcow2"}, 400, "sha256"),
        ({"name": "alpine", "url": "http://127.0.0.1:1/a.qcow2", "sha256": "xyz"}, 400, "sha256"),
        ({"name": "alpine", "url": "http://127.0.0.1:1/a.qcow2", "sha256": SHA, "source_host": h1.pk}, 400, "url"),
        ({"name": "../x", "source_host": h1.pk}, 400, ".."),
        ({"name": "alpine", "source_host": 99}, 404, "source host 99"),
        ({"name": "alpine", "source_host": h1.pk, "hosts": [h2.pk, 99]}, 404, "99"),
        ({"name": "nope", "source_host": h1.pk}, 422, "has no image 'nope'"),
        ({"name": "alpine", "source_host": h1.pk, "hosts": [h1.pk]}, 422, "no online host"),
    ]:
        r = api.post("/api/images", body, format="json")
        assert r.status_code == code and words in str(r.json()), (body, r.json())
    assert Task.objects.count() == 0

    r = api.post("/api/images", {"name": "alpine", "source_host": h1.pk}, format="json")
    assert r.status_code == 202 and r.json()["hosts"] == [h2.pk]
    task = Task.objects.get(pk=r.json()["task"])
    assert (task.action, task.params["source_host"], task.status) == ("fleet.image_spread", h1.pk, "pending")


def test_only_operators_put_or_remove_images_and_a_used_image_stays(api):  # noqa: F811
    host = make_host("127.0.0.1:1")
    env = Environment.objects.create(id="e", ssh_keys=[])
    Vm.objects.create(id="e-0", env=env, host=host, image="alpine", engine="qemu", cpu=1, mem=64, disk=64)
    r = api.delete("/api/images/alpine")
    assert r.status_code == 409 and "e-0" in r.json()["detail"]  # refused before any agent is called
    assert api.delete("/api/images/alpine?host=x").status_code == 400

    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=User.objects.create(username='bob'))}")
    assert owner.get("/api/images").json()[0]["hosts"][0]["sha256"] == ""
    assert owner.post("/api/images", {"name": "alpine", "source_host": host.pk}, format="json").status_code == 403
    assert owner.delete("/api/images/alpine").status_code == 403

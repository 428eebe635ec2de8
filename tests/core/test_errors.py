"""What a client gets when the server fails: a JSON 500 naming a request id, never the internal error, which
goes to the log under that id."""

import logging

import pytest
from django.test import Client

from .urls_failing import SECRET

pytestmark = [pytest.mark.urls("tests.core.urls_failing"), pytest.mark.django_db]


@pytest.mark.parametrize("route", ["/api/bug", "/page/bug"])
def test_a_500_names_a_request_id_and_hides_the_error(route, caplog):
    with caplog.at_level(logging.ERROR):
        reply = Client(raise_request_exception=False).get(route)
    assert reply.status_code == 500 and reply["Content-Type"].startswith("application/json")
    request_id = reply["X-Request-ID"]
    detail = reply.json()["detail"]
    assert SECRET not in reply.content.decode() and "hunter2" not in detail
    assert request_id in detail and detail.startswith("Internal server error")
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert request_id in logged
    assert any(record.exc_info and SECRET in str(record.exc_info[1]) for record in caplog.records)


def test_every_reply_has_its_own_request_id(client):
    first, second = client.get("/api/nothing"), client.get("/api/nothing")
    assert first["X-Request-ID"] and first["X-Request-ID"] != second["X-Request-ID"]

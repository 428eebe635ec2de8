import pytest


@pytest.mark.django_db
def test_unknown_route_is_json(client):
    reply = client.get("/api/nothing-here")
    assert reply.status_code == 404
    assert reply.json()["detail"].startswith("Not found")

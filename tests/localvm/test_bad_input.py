"""Bad input answers 4xx with a JSON detail and runs nothing."""

import pytest

from .conftest import BASE_IMAGE


@pytest.mark.parametrize("name", ["-rf", ".hidden", "a" * 129, "sp ace", "semi;colon", "ünï"])
def test_invalid_new_names(api, name):
    for path, body in (("/api/vms/dev/clone", {"new_name": name}),
                       ("/api/vms/create", {"name": name, "source_vm": "dev"})):
        reply = api.post(path, json=body)
        assert reply.status_code == 400, (path, reply.text)
        assert reply.json()["detail"]


@pytest.mark.parametrize("name", ["refresh", "pull", "create", "categorized", "available-images"])
def test_names_of_static_routes_are_reserved(api, name):
    reply = api.post("/api/vms/create", json={"name": name, "source_vm": "dev"})
    assert reply.status_code == 400
    assert "reserved" in reply.json()["detail"]


@pytest.mark.parametrize("oci_url", ["", "not a url", "macos-sonoma-base", "-ghcr.io/x/y", "ghcr.io/x/y:tag with space",
                                     "ghcr.io/UPPER/y", "https://ghcr.io/x/y"])
def test_invalid_oci_urls(api, oci_url):
    reply = api.post("/api/vms/pull", json={"oci_url": oci_url})
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"]


@pytest.mark.parametrize(("field", "value"), [("cpu", 0), ("cpu", 65), ("memory", 0), ("memory", 513),
                                              ("disk_size", 5), ("disk_size", 5000), ("cpu", "many")])
def test_create_ranges(api, field, value):
    reply = api.post("/api/vms/create", json={"name": "range-vm", "source_vm": BASE_IMAGE, field: value})
    assert reply.status_code == 400
    assert field in reply.json()["detail"]


def test_missing_fields_and_bad_json(api):
    assert api.post("/api/vms/pull", json={}).status_code == 400
    assert api.post("/api/vms/create", json={"name": "x"}).status_code == 400
    reply = api.post("/api/vms/dev/clone", content=b"{not json", headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json()["detail"]
    assert api.post("/api/settings/github-token", json={"token": "has space"}).status_code == 400


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/vms/nope"), ("GET", "/api/vms/nope/config"), ("POST", "/api/vms/nope/start"),
    ("POST", "/api/vms/nope/stop"), ("POST", "/api/vms/nope/delete"), ("POST", "/api/vms/nope/clone"),
    ("GET", "/api/tasks/00000000-0000-0000-0000-000000000000"), ("GET", "/api/nothing"),
])
def test_unknown_things_are_404(api, method, path):
    reply = api.request(method, path, json={"new_name": "fresh"})
    assert reply.status_code == 404, reply.text
    assert reply.json()["detail"]


def test_create_from_an_unknown_local_vm_is_404(api):
    reply = api.post("/api/vms/create", json={"name": "fresh", "source_vm": "nope"})
    assert reply.status_code == 404


def test_invalid_name_in_the_path(api):
    reply = api.get("/api/vms/-rf/config")
    assert reply.status_code == 400


def test_start_or_stop_an_oci_image_is_a_clear_4xx(api):
    for verb in ("start", "stop"):
        reply = api.post(f"/api/vms/{BASE_IMAGE}/{verb}", json={})
        assert reply.status_code == 422
        assert "OCI image" in reply.json()["detail"] and "Clone it first" in reply.json()["detail"]


def test_clone_over_an_existing_vm_is_409(api):
    for path, body in (("/api/vms/dev/clone", {"new_name": "second"}),
                       ("/api/vms/create", {"name": "second", "source_vm": "dev"})):
        reply = api.post(path, json=body)
        assert reply.status_code == 409
        assert "already exists" in reply.json()["detail"]


def test_nothing_was_queued(api):
    assert api.get("/api/tasks/active").json() == []

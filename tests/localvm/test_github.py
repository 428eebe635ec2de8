"""GET /api/vms/available-images against a local server that answers like the GitHub REST API."""

import pytest

TOKEN = "ghp_testtoken1234567890"


@pytest.fixture
def github(localvm, api):
    localvm.github.fail_status = None
    localvm.github.token = TOKEN
    yield localvm.github
    localvm.github.fail_status = None
    api.post("/api/settings/github-token", json={"token": ""})


def test_without_a_token_the_reply_says_so(api, github):
    reply = api.get("/api/vms/available-images")
    assert reply.status_code == 422
    assert "GitHub token" in reply.json()["detail"]


def test_lists_macos_images_with_their_tags_across_pages(api, github):
    api.post("/api/settings/github-token", json={"token": TOKEN})
    github.requests.clear()
    reply = api.get("/api/vms/available-images")
    assert reply.status_code == 200, reply.text
    images = reply.json()
    assert [i["name"] for i in images] == ["macos-runner", "macos-sonoma-base", "macos-sonoma-xcode",
                                           "macos-ventura-base"]  # not "ubuntu"; page 3 of 3 included
    sonoma = images[1]
    assert sonoma == {"name": "macos-sonoma-base", "url": "ghcr.io/cirruslabs/macos-sonoma-base:latest",
                      "description": "macOS Sonoma with Xcode CLT", "tags": ["latest", "14.3", "14.4", "14.5"],
                      "updated_at": "2024-05-01T10:00:00Z"}
    assert images[2]["description"] == "Sonoma + Xcode"  # from the repository when the package has none
    assert images[0]["url"] == "ghcr.io/cirruslabs/macos-runner:sonoma"  # no "latest" tag
    assert len(images[1]["tags"]) == 4  # versions came in two pages of two (plus an untagged one)
    assert sum("page=3" in r for r in github.requests) >= 1

    # Cached: a second listing does not ask GitHub again; ?force_refresh=true does.
    seen = len(github.requests)
    assert api.get("/api/vms/available-images").json() == images
    assert len(github.requests) == seen
    assert api.get("/api/vms/available-images", params={"force_refresh": "true"}).status_code == 200
    assert len(github.requests) > seen


def test_a_rejected_token_is_a_502_with_the_reason(api, github):
    api.post("/api/settings/github-token", json={"token": "ghp_wrongtoken000000"})
    reply = api.get("/api/vms/available-images")
    assert reply.status_code == 502
    assert "401" in reply.json()["detail"] and "Bad credentials" in reply.json()["detail"]


def test_a_github_failure_is_a_502_not_an_empty_list(api, github):
    api.post("/api/settings/github-token", json={"token": TOKEN})
    github.fail_status = 500
    reply = api.get("/api/vms/available-images", params={"force_refresh": "true"})
    assert reply.status_code == 502
    assert "500" in reply.json()["detail"]

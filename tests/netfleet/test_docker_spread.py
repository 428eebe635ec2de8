"""A docker image spread host to host on the namespace fleet. Each host has a dockerd of its own, so the
image really is missing on the targets before the spread (the loopback agents of tests/imports share one
daemon): `docker save` streamed by the source's agent, checked and `docker load`ed by each target's."""

import pytest

from tests.conftest import wait_for

from .flows import create_env, env_body, env_id, wait_task
from .hosts import IMAGE

pytestmark = pytest.mark.timeout(600)
REF = "ttstack-test/spread:1"


def image_ids(host) -> dict:
    with host.docker() as client:
        return {tag: image.id for image in client.images.list() for tag in image.tags}


def test_a_docker_image_spreads_to_the_hosts_that_lack_it_and_boots_there(netfleet, controller):
    fleet = netfleet(3)
    source, *targets = fleet.hosts
    with source.docker() as client:
        client.images.get(IMAGE).tag(*REF.split(":"))
    made = image_ids(source)[REF]
    assert all(REF not in image_ids(t) for t in targets)
    ctl = controller(env={"TTSTACK_PLACEMENT": "spread"})
    with ctl.client() as c:
        ids = fleet.register(c)

        def listed() -> dict:
            image = next((i for i in c.get("/api/images").json() if i["name"] == REF), None)
            return {h["id"]: h["sha256"] for h in image["hosts"]} if image else {}

        assert listed() == {ids[source.name]: made.removeprefix("sha256:")}

        reply = c.post("/api/images", json={"name": REF, "source_host": ids[source.name]})
        assert reply.status_code == 202, reply.text
        task = wait_task(c, reply.json()["task"], timeout=300)
        assert task["status"] == "completed", task
        assert {h["state"] for h in task["result"]["hosts"].values()} == {"done"}
        for target in targets:  # the same image (same id), under the same name
            assert image_ids(target)[REF] == made
        wait_for(lambda: len(listed()) == 3, message="every host listing the image")
        assert set(listed().values()) == {made.removeprefix("sha256:")}

        again = wait_task(c, c.post("/api/images", json={"name": REF, "source_host": ids[source.name]})
                          .json()["task"])
        assert {h["state"] for h in again["result"]["hosts"].values()} == {"present"}

        name = env_id("spread-img")
        env = create_env(c, env_body(name, vms=3, image=REF))
        assert env["state"] == "active" and len({vm["host"] for vm in env["vms"]}) == 3
        assert wait_task(c, c.delete(f"/api/envs/{name}").json()["task"])["status"] == "completed"

        # an image no host has: a clear refusal, nothing started
        missing = c.post("/api/images", json={"name": "ttstack-test/nowhere:1", "source_host": ids[source.name]})
        assert missing.status_code in (404, 422) and "no image" in missing.json()["detail"]

"""Image imports on a real agent: from a local http.server on 127.0.0.1 and from a local path, with a right
and a wrong sha256, qcow2 checks, docker-archive tarballs through `docker load`, and removal (refused while
a VM uses the image)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.agent.conftest import TINY, agent_server, docker_client, docker_tiny  # noqa: F401 - fixtures
from tests.conftest import require, wait_for

from .conftest import image_files, random_file, sha256, wait_task

pytestmark = pytest.mark.timeout(300)


def qcow2(path, *backing):
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        argv += ["-b", str(backing[0]), "-F", "qcow2"]
    subprocess.run([*argv, str(path), "64M"], check=True)
    return path


def names(client) -> dict:
    return {image["name"]: image for image in client.get("/api/images").json()}


def test_disk_import_appears_only_with_the_right_sha256(agent_server, file_server):  # noqa: F811
    root, base = file_server
    good = qcow2(root / "good.qcow2")
    qcow2(root / "overlay.qcow2", good)
    agent = agent_server()
    images = agent.data_dir / "images"
    with agent.client() as c:
        r = c.post("/api/images", json={"name": "imp-good", "url": f"{base}/good.qcow2", "sha256": sha256(good)})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task"])
        assert task["status"] == "completed", task
        assert task["result"]["bytes"] == good.stat().st_size and task["result"]["percent"] == 100.0
        listed = names(c)["imp-good"]
        assert (listed["kind"], listed["format"], listed["sha256"]) == ("disk", "qcow2", sha256(good))
        assert image_files(images, "imp-good") == [".imp-good.qcow2.sha256", "imp-good.qcow2"]

        r = c.post("/api/images", json={"name": "imp-bad", "url": f"{base}/good.qcow2", "sha256": "0" * 64})
        task = wait_task(c, r.json()["task"])
        assert task["status"] == "failed" and "sha256 mismatch" in task["error"], task
        assert "imp-bad" not in names(c) and image_files(images, "imp-bad") == []

        # a qcow2 whose backing file is a host path would hand that file to the guest
        r = c.post("/api/images", json={"name": "imp-overlay", "url": f"{base}/overlay.qcow2",
                                        "sha256": sha256(root / "overlay.qcow2")})
        task = wait_task(c, r.json()["task"])
        assert task["status"] == "failed" and "backing file" in task["error"], task
        assert image_files(images, "imp-overlay") == []

        r = c.post("/api/images", json={"name": "imp-raw", "path": str(good), "format": "raw",
                                        "sha256": sha256(good)})
        assert wait_task(c, r.json()["task"])["status"] == "completed"
        assert names(c)["imp-raw"]["format"] == "raw"

        for body, field in [
            ({"name": "x", "url": f"{base}/good.qcow2"}, "sha256"),
            ({"name": "../etc", "url": f"{base}/good.qcow2", "sha256": sha256(good)}, "image"),
            ({"name": "x", "url": "ftp://127.0.0.1/x.qcow2", "sha256": sha256(good)}, "url"),
            ({"name": "x", "url": f"{base}/good.qcow2", "path": str(good), "sha256": sha256(good)}, "url"),
            ({"name": "x", "url": f"{base}/good", "sha256": sha256(good)}, "format"),
            ({"name": "x", "path": "relative.qcow2", "sha256": sha256(good)}, "url"),
        ]:
            r = c.post("/api/images", json=body)
            assert r.status_code == 400 and field in r.json().get("errors", {}), (body, r.text)
        r = c.post("/api/images", json={"name": "imp-good", "url": f"{base}/good.qcow2", "sha256": sha256(good)})
        assert r.status_code == 409 and "exists" in r.json()["detail"]

        assert c.delete("/api/images/imp-good").status_code == 200
        assert "imp-good" not in names(c) and image_files(images, "imp-good") == []
        assert c.delete("/api/images/imp-good").status_code == 404
        assert c.delete("/api/images/..%2F..%2Fetc").status_code == 400
    assert sorted(p.name for p in images.iterdir() if ".import-" in p.name) == []


def test_docker_archive_import_and_removal_refused_while_in_use(agent_server, file_server, docker_tiny):  # noqa: F811
    require("docker")
    root, base = file_server
    docker = docker_client()
    with open(root / "tiny.tar", "wb") as fh:
        for chunk in docker.images.get(TINY).save(named=True):
            fh.write(chunk)
    ref = f"ttstack/imported-{uuid.uuid4().hex[:8]}:v1"
    agent = agent_server()
    try:
        with agent.client() as c:
            r = c.post("/api/images", json={"name": ref, "url": f"{base}/tiny.tar",
                                            "sha256": sha256(root / "tiny.tar")})
            assert r.status_code == 202, r.text
            task = wait_task(c, r.json()["task"])
            assert task["status"] == "completed", task
            assert names(c)[ref]["kind"] == "docker"
            assert docker.images.get(ref).id == docker.images.get(TINY).id

            vm = c.post("/api/vms", json={"id": "imp-vm", "engine": "docker", "image": ref, "cpu": 1, "mem": 64,
                                          "disk": 100})
            assert vm.status_code == 201, vm.text
            r = c.delete(f"/api/images/{ref}")
            assert r.status_code == 409 and "imp-vm" in r.json()["detail"]
            assert c.delete("/api/vms/imp-vm").status_code == 204
            assert c.delete(f"/api/images/{ref}").status_code == 200
            assert ref not in names(c)
        assert docker.images.get(TINY)  # the image it was loaded from is untouched
    finally:
        import docker as sdk

        try:
            docker.images.remove(ref)
        except sdk.errors.ImageNotFound:
            pass


def test_an_import_cut_by_the_agent_dying_leaves_no_partial_image(agent_server, file_server, faulty_link):  # noqa: F811
    root, base = file_server
    disk = random_file(root / "slow.raw", 4 << 20)
    link = faulty_link(base.removeprefix("http://"))
    link.rate = 256 << 10  # 16 s for the whole file: the agent dies well before the end
    agent = agent_server()
    images = agent.data_dir / "images"
    with agent.client() as c:
        r = c.post("/api/images", json={"name": "slow", "url": f"http://{link.addr}/slow.raw", "sha256": sha256(disk)})
        task_id = r.json()["task"]
        wait_for(lambda: (c.get(f"/api/tasks/{task_id}").json().get("result") or {}).get("bytes"),
                 message="the import under way")
        assert [name for name in image_files(images, "slow") if ".import-" in name]
    agent.kill()
    agent.start()
    with agent.client() as c:
        task = c.get(f"/api/tasks/{task_id}").json()
        assert task["status"] == "failed" and "stopped during the import" in task["error"]
        assert image_files(images, "slow") == [] and "slow" not in names(c)

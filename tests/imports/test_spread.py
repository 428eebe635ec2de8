"""Spreading an image host to host through a real controller and three real agents on 127.0.0.1.

The source agent is registered behind a FaultyLink (a TCP proxy in this process): the controller's calls
and the targets' downloads reach it only through the link, which slows the bytes (so progress shows on the
task WebSocket) and cuts connections mid-copy. A cut once per download is resumed (HTTP Range) and the
spread completes; a link that cuts every time fails the task clearly and leaves no partial image."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.sync.client import connect

from tests.agent.conftest import agent_server, docker_tiny  # noqa: F401 - fixtures
from tests.conftest import wait_for

from .conftest import image_files, random_file, sha256, wait_task

pytestmark = pytest.mark.timeout(300)
MIB = 1 << 20


def task_messages(controller, task_id: str) -> list[dict]:
    """Every state of the task the WebSocket sends, to the end (the server closes it then)."""
    url = f"ws://127.0.0.1:{controller.port}/ws/tasks/{task_id}?token={controller.api_key}"
    messages = []
    with connect(url, open_timeout=10) as ws:
        for raw in ws:
            messages.append(json.loads(raw))
    return messages


def hosts_having(client, name: str) -> dict:
    image = next((i for i in client.get("/api/images").json() if i["name"] == name), None)
    return {h["id"]: h["sha256"] for h in image["hosts"]} if image else {}


def test_spread_host_to_host_with_progress_retries_a_cut_and_fails_clean(
        role_server, agent_server, file_server, faulty_link):  # noqa: F811
    root, base = file_server
    first = random_file(root / "first.raw", 4 * MIB)
    doomed = random_file(root / "doomed.raw", 4 * MIB)
    with ThreadPoolExecutor(4) as pool:  # servers start in parallel: most of their start-up is waiting
        controller_started = pool.submit(role_server, "controller")
        source, *targets = pool.map(lambda _: agent_server(), range(3))
        controller = controller_started.result()
    with source.client() as c:
        for path in (first, doomed):
            r = c.post("/api/images", json={"name": path.stem, "url": f"{base}/{path.name}",
                                            "sha256": sha256(path)})
            assert wait_task(c, r.json()["task"])["status"] == "completed"
    link = faulty_link(source.addr)
    with controller.client() as c:
        ids = [c.post("/api/hosts", json={"addr": addr, "api_key": agent.api_key}).json()["id"]
               for addr, agent in [(link.addr, source), *((t.addr, t) for t in targets)]]
        source_id, target_ids = ids[0], ids[1:]
        wait_for(lambda: hosts_having(c, "first").get(source_id), message="the source's image listed")

        link.rate, link.cut_after, link.cuts = 2 * MIB, MIB, 2  # each target's first download is cut at 1 MiB
        r = c.post("/api/images", json={"name": "first", "source_host": source_id})
        assert r.status_code == 202, r.text
        assert sorted(r.json()["hosts"]) == sorted(target_ids)
        messages = task_messages(controller, r.json()["task"])
        final = messages[-1]
        assert final["status"] == "completed", final
        for host_id in target_ids:
            seen = [m["result"]["hosts"][str(host_id)] for m in messages if m.get("result")]
            assert any(h["state"] == "copying" and 0 < h["percent"] < 100 for h in seen), seen
            assert final["result"]["hosts"][str(host_id)]["state"] == "done"
        assert link.cuts_done == 2 and link.range_requests >= 2  # cut twice, resumed from where it stopped
        assert hosts_having(c, "first") == {i: sha256(first) for i in ids}

        # a directory image (disk + kernel + image.json) travels as a bundle; a host that has it is left alone
        link.rate, link.cut_after = None, None
        bundle = source.data_dir / "images" / "dir-image"
        bundle.mkdir()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(bundle / "disk.qcow2"), "64M"], check=True)
        random_file(bundle / "vmlinuz", 100_000)
        (bundle / "image.json").write_text(json.dumps({"disk": "disk.qcow2", "kernel": "vmlinuz",
                                                       "sha256": sha256(bundle / "disk.qcow2")}))
        wait_for(lambda: hosts_having(c, "dir-image"), message="the directory image listed")
        for expected in ("done", "present"):
            r = c.post("/api/images", json={"name": "dir-image", "source_host": source_id})
            task = wait_task(c, r.json()["task"])
            assert task["status"] == "completed", task
            assert {h["state"] for h in task["result"]["hosts"].values()} == {expected}
        for target in targets:
            copy = target.data_dir / "images" / "dir-image"
            assert sorted(p.name for p in copy.iterdir()) == ["disk.qcow2", "image.json", "vmlinuz"]
            assert all((copy / f).read_bytes() == (bundle / f).read_bytes() for f in ("disk.qcow2", "vmlinuz"))
        assert set(hosts_having(c, "dir-image").values()) == {sha256(bundle / "disk.qcow2")}

        link.rate, link.cut_after, link.cuts = None, 256 * 1024, -1  # every connection cut at 256 KiB
        r = c.post("/api/images", json={"name": "doomed", "source_host": source_id, "hosts": target_ids[:1]})
        task = wait_task(c, r.json()["task"])
        assert task["status"] == "failed" and "cut after" in task["error"], task
        assert task["result"]["hosts"][str(target_ids[0])]["state"] == "failed"
        assert image_files(targets[0].data_dir / "images", "doomed") == []
        assert list(hosts_having(c, "doomed")) == [source_id]


def test_a_source_killed_mid_copy_fails_the_spread_by_name_and_leaves_no_partial_image(
        role_server, agent_server, file_server, faulty_link):  # noqa: F811
    """The source agent dies (SIGKILL) while a target downloads from it: the target's resumes and the
    controller's second import (a new ticket) find nobody, the task fails naming the target and why, and the
    target keeps nothing of the image."""
    root, base = file_server
    image = random_file(root / "big.raw", 8 * MIB)
    with ThreadPoolExecutor(3) as pool:
        controller_started = pool.submit(role_server, "controller")
        source, target = pool.map(lambda _: agent_server(), range(2))
        controller = controller_started.result()
    with source.client() as c:
        r = c.post("/api/images", json={"name": "big", "url": f"{base}/big.raw", "sha256": sha256(image)})
        assert wait_task(c, r.json()["task"])["status"] == "completed"
    link = faulty_link(source.addr)
    with controller.client() as c:
        source_id, target_id = (c.post("/api/hosts", json={"addr": addr, "api_key": agent.api_key}).json()["id"]
                                for addr, agent in ((link.addr, source), (target.addr, target)))
        wait_for(lambda: hosts_having(c, "big").get(source_id), message="the source's image listed")
        link.rate = MIB  # 8 s for the copy: time to kill the source in the middle
        task_id = c.post("/api/images", json={"name": "big", "source_host": source_id}).json()["task"]

        def copying() -> bool:
            hosts = (c.get(f"/api/tasks/{task_id}").json().get("result") or {}).get("hosts") or {}
            return (hosts.get(str(target_id)) or {}).get("bytes", 0) >= MIB

        wait_for(copying, timeout=60, message="the target halfway through the copy")
        source.kill()
        task = wait_task(c, task_id)
        assert task["status"] == "failed", task
        assert target.addr in task["error"] and "not on 1 of 1 host" in task["error"], task["error"]
        assert task["result"]["hosts"][str(target_id)]["state"] == "failed"
    assert image_files(target.data_dir / "images", "big") == []
    with target.client() as t:
        assert not any(i["name"] == "big" for i in t.get("/api/images").json())

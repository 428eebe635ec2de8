"""A WebSocket client sees a pull's progress lines as tart prints them, then `completed`."""

import json

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def _watch(localvm, task_id: str, close_code: int = 1000) -> list[dict]:
    url = f"ws://127.0.0.1:{localvm.port}/ws/tasks/{task_id}?token={localvm.token}"
    messages = []
    with connect(url, origin=f"http://127.0.0.1:{localvm.port}", open_timeout=10) as ws:
        try:
            for raw in ws:  # the server closes the socket once the task has ended
                messages.append(json.loads(raw))
        except ConnectionClosed:
            pass
        assert ws.close_code == close_code, (ws.close_code, [m.get("status") for m in messages])
    return messages


def test_pull_progress_streams_over_the_websocket(localvm, api):
    url = "ghcr.io/cirruslabs/macos-streamed-base:latest"
    reply = api.post("/api/vms/pull", json={"oci_url": url})
    assert reply.status_code == 202
    messages = _watch(localvm, reply.json()["id"])

    assert messages[-1]["status"] == "completed", messages[-1]
    assert messages[-1]["result"]["name"] == url
    running = [m for m in messages if m["status"] == "running"]
    sizes = [len(m["logs"]) for m in running]
    assert sizes == sorted(sizes)  # logs only grow
    progress = [m for m in running if any(line.endswith("%") for line in m["logs"])]
    # Several updates arrived while the pull was still printing percentages, before it completed.
    assert len({len(m["logs"]) for m in progress}) >= 3, sizes
    assert not any("100%" in m["logs"] for m in progress[:1])
    assert "100%" in messages[-1]["logs"]


def test_failed_start_reaches_the_websocket(localvm, api):
    reply = api.post("/api/vms/broken/start", json={})
    messages = _watch(localvm, reply.json()["id"])
    assert messages[-1]["status"] == "failed"
    assert "failed to start" in messages[-1]["stderr"]


def test_unknown_task_over_the_websocket(localvm):
    messages = _watch(localvm, "00000000-0000-0000-0000-000000000000", close_code=4404)
    assert messages == [{"detail": "Task 00000000-0000-0000-0000-000000000000 not found."}]

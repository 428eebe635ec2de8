"""Event stream latency (run: .venv/bin/python bench/events.py [--changes N] [--redis URL]).

From a state change to its event on a WebSocket client: a separate process on the controller's database
(as the worker is) moves an environment between states N times (Environment.set_state, which records an
`env.state` event), noting when each change was made; a client subscribed to
`/ws/events?target=env/...` notes when each event arrives. Two real `ttstack controller` processes:
one with REDIS_URL (the channel layer wakes the subscriber at once), one embedded (in-memory layer: the
worker's hints never reach the web process, the subscriber finds the rows by polling TTSTACK_EVENT_POLL).
Baseline, in this process: a bare Redis PUBLISH -> SUBSCRIBE round trip, the floor of the Redis path.
Goals: p50 <= 50 ms with Redis, <= 1 s embedded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import RoleServer  # noqa: E402 - the tests' server runner, after the path is set

KEY = "bench-key"

# Runs in the controller's environment, on its database: N state changes, one JSON line per change.
WRITER = """
import json, random, sys, time
from fleet.models import Environment
env, _ = Environment.objects.get_or_create(id={env!r}, defaults={{"ssh_keys": [], "state": "active"}})
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
for i in range({n}):
    state = "stopped" if env.state == "active" else "active"
    began = time.time()
    env.set_state(state)
    sys.stdout.write(json.dumps({{"i": i, "state": state, "t": began}}) + "\\n"); sys.stdout.flush()
    time.sleep(random.uniform(0.02, 0.06))
"""


def controller(extra: dict, port: int = 0) -> RoleServer:
    """A real `ttstack controller` (daphne + worker + fleet loop) on 127.0.0.1 with its own data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix="ttstack-bench-events-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY")}
    env.update(TTSTACK_DATA_DIR=str(data_dir), TTSTACK_BIND="127.0.0.1", TTSTACK_WORKERS="1", **extra)
    server = RoleServer("controller", data_dir, env, KEY, [])
    if port:
        server.port, server.url = port, f"http://127.0.0.1:{port}"
    return server.start()


async def measure(ctl: RoleServer, n: int) -> list[float]:
    """Latencies (seconds) of n state changes made by another process, seen on a WebSocket client."""
    import websockets

    env_id = f"bench-{uuid.uuid4().hex[:8]}"
    code = WRITER.format(env=env_id, n=n)
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ttproject.cli", "manage", "controller", "shell", "-c", code, env=ctl.env, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    while (line := await writer.stdout.readline()).strip() != b"ready":  # the shell's own banner first
        if not line:
            raise SystemExit("the writer did not start")
    arrived: list[tuple[float, str]] = []
    url = f"ws://127.0.0.1:{ctl.port}/ws/events?token={KEY}&target=env/{env_id}&type=env.state"
    async with websockets.connect(url, open_timeout=10) as ws:
        writer.stdin.write(b"go\n")
        await writer.stdin.drain()
        async with asyncio.timeout(60 + n):
            while len(arrived) < n:
                event = json.loads(await ws.recv())
                arrived.append((time.time(), event["outcome"]))
    made = [json.loads(line) for line in (await writer.stdout.read()).decode().splitlines()
            if line.startswith("{")]
    await writer.wait()
    assert [m["state"] for m in made] == [state for _, state in arrived], "events out of order or missing"
    return [got - change["t"] for (got, _), change in zip(arrived, made, strict=True)]


def pubsub_floor(redis_url: str, n: int) -> list[float]:
    import redis

    client = redis.Redis.from_url(redis_url)
    channel = f"bench-{uuid.uuid4().hex[:8]}"
    sub = client.pubsub()
    sub.subscribe(channel)
    sub.get_message(timeout=1)
    out = []
    for _ in range(n):
        began = time.time()
        client.publish(channel, b"x")
        while sub.get_message(timeout=1) is None:
            pass
        out.append(time.time() - began)
    sub.close()
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--port", type=int, default=0,
                        help="the controllers listen on PORT and PORT+1 (default: any free ports)")
    parser.add_argument("--redis", default=os.environ.get("TTSTACK_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    results = {}
    sides = (("redis", {"REDIS_URL": args.redis, "TTSTACK_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}"}),
             ("embedded", {}))
    for offset, (name, extra) in enumerate(sides):
        ctl = controller(extra, args.port + offset if args.port else 0)
        try:
            results[name] = asyncio.run(measure(ctl, args.changes))
        finally:
            ctl.stop()
    floor = pubsub_floor(args.redis, args.changes)
    print(f"{args.changes} state changes per side, made by another process; latency to the WebSocket client")
    print(f"baseline  Redis PUBLISH->SUBSCRIBE: p50 {statistics.median(floor) * 1000:7.2f} ms  "
          f"p99 {pct(floor, 99) * 1000:7.2f} ms")
    for name, goal in (("redis", 0.050), ("embedded", 1.0)):
        lat = results[name]
        p50, p99 = statistics.median(lat), pct(lat, 99)
        print(f"{name:9s} event stream:         p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms  "
              f"(goal p50 <= {goal * 1000:.0f} ms: {'met' if p50 <= goal else 'MISSED'}; "
              f"p50 ratio to baseline {p50 / statistics.median(floor):.1f})")
    print(f"ratio embedded/redis p50: {statistics.median(results['embedded']) / statistics.median(results['redis']):.1f}")


if __name__ == "__main__":
    main()

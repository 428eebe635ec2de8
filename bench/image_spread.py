"""Image spread throughput (issue 12): one disk image host to host through ttstack against a raw copy of
the same file over the same link, in the same process (goal: >= 0.8x).

- ttstack: `POST /api/images {"name", "source_host"}` on a real controller with two real agents (loopback);
  timed from the POST to the task's `completed` (ticket, the target's download with its sha256, fsync,
  rename, and the controller following the agent's task), and the target agent's import task alone.
- raw copy: the file sent with sendfile(2) over a TCP connection on the same loopback and written, fsync'ed,
  into the target agent's image directory (no checksum, no HTTP).

With `--link-mbps N` both go through the same TCP proxy in this process that passes N MB/s per connection
(tests/imports/conftest.py FaultyLink), standing in for a network link slower than loopback.

    .venv/bin/python bench/image_spread.py [--mib 512] [--rounds 3] [--link-mbps 110]
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["TTSTACK_DATA_DIR"] = tempfile.mkdtemp(prefix="ttstack-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("TTSTACK_API_KEY", None)
MIB = 1 << 20


def raw_copy(src: Path, dest: Path, link_mbps: float | None) -> float:
    """Seconds to send `src` over loopback TCP with sendfile and write it to `dest` (fsync'ed)."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    link = None
    if link_mbps:
        from tests.imports.conftest import FaultyLink

        link = FaultyLink(f"127.0.0.1:{address[1]}")
        link.rate = link_mbps * 1e6
        address = ("127.0.0.1", int(link.addr.rsplit(":", 1)[1]))

    def serve():
        conn, _ = listener.accept()
        with conn, src.open("rb") as fh:
            conn.sendfile(fh)

    sender = threading.Thread(target=serve)
    start = time.perf_counter()
    sender.start()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with socket.create_connection(address) as sock, dest.open("wb") as out:
        while n := sock.recv_into(buf):
            out.write(view[:n])
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - start
    sender.join()
    listener.close()
    if link:
        link.close()
    dest.unlink()
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512, help="size of the image (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mbps", type=float, default=None, help="pass both copies through a link of this "
                                                                        "many MB/s (default: plain loopback)")
    args = parser.parse_args()

    import httpx

    from tests.conftest import RoleServer

    base = Path(os.environ["TTSTACK_DATA_DIR"])
    common = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "TTSTACK_ROLE")}
    common.update(TTSTACK_BIND="127.0.0.1", TTSTACK_PUBLISH_ADDR="127.0.0.1", TTSTACK_HEARTBEAT="1",
                  TTSTACK_ENGINES="docker")
    servers = []
    try:
        for role in ("agent", "agent", "controller"):
            d = base / f"{role}{len(servers)}"
            d.mkdir()
            servers.append(RoleServer(role, d, dict(common, TTSTACK_DATA_DIR=str(d)), "k", []).start(120))
        source, target, ctl = servers
        image = base / "bench.raw"
        with image.open("wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(MIB))
        import hashlib

        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        http = httpx.Client(base_url=ctl.url, headers={"Authorization": "Bearer k"}, timeout=600)
        agent_http = {s: httpx.Client(base_url=s.url, headers={"Authorization": "Bearer k"}, timeout=600)
                      for s in (source, target)}

        def wait(client, task_id):
            while (task := client.get(f"/api/tasks/{task_id}").json())["status"] not in ("completed", "failed"):
                time.sleep(0.05)
            assert task["status"] == "completed", task
            return task

        r = agent_http[source].post("/api/images", json={"name": "bench", "path": str(image), "sha256": digest})
        wait(agent_http[source], r.json()["task"])
        source_addr = source.addr
        if args.link_mbps:
            from tests.imports.conftest import FaultyLink

            link = FaultyLink(source.addr)
            link.rate = args.link_mbps * 1e6
            source_addr = link.addr
        ids = [http.post("/api/hosts", json={"addr": addr, "api_key": "k"}).json()["id"]
               for addr in (source_addr, target.addr)]
        target_dir = target.data_dir / "images"
        target_dir.mkdir(exist_ok=True)

        spread, agent_side, raw = [], [], []
        for _ in range(args.rounds):
            raw.append(raw_copy(image, target_dir / ".raw-copy", args.link_mbps))
            agent_http[target].delete("/api/images/bench")
            start = time.perf_counter()
            r = http.post("/api/images", json={"name": "bench", "source_host": ids[0], "hosts": [ids[1]]})
            wait(http, r.json()["task"])
            spread.append(time.perf_counter() - start)
            agent_task = agent_http[target].get("/api/tasks").json()[0]
            agent_side.append(agent_task["updated_at"] - agent_task["created_at"])
        raw_s, spread_s, agent_s = (statistics.median(x) for x in (raw, spread, agent_side))
        mb = args.mib * MIB / 1e6
        link_words = f"a {args.link_mbps:g} MB/s link" if args.link_mbps else "loopback"
        print(f"image spread of {args.mib} MiB, median of {args.rounds} ({link_words}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f})")
        print(f"  raw copy (sendfile over TCP, fsync)   {raw_s:7.2f} s  {mb / raw_s:8.1f} MB/s")
        print(f"  ttstack spread, POST -> completed     {spread_s:7.2f} s  {mb / spread_s:8.1f} MB/s  "
              f"ratio {raw_s / spread_s:.2f}x of raw (goal >= 0.8x)")
        print(f"  target agent's import task alone      {agent_s:7.2f} s  {mb / agent_s:8.1f} MB/s  "
              f"ratio {raw_s / agent_s:.2f}x of raw")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()

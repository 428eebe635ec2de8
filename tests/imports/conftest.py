"""Fixtures of the image import and spread tests: files served by a local `http.server` on 127.0.0.1, a
TCP proxy that slows or cuts the bytes between two agents, and the helpers that wait for tasks."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import wait_for


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    """(directory, base URL): whatever the test puts in the directory is served at URL/NAME."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FaultyLink:
    """A TCP proxy on 127.0.0.1 in front of `upstream` (host:port). `rate`: bytes/s towards the client
    (None: full speed); `cut_after`: a connection is closed once it carried that many bytes to the client,
    for the next `cuts` connections that get that far (-1: every one). Counts what it did."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rate: float | None = None
        self.cut_after: int | None = None
        self.cuts = 0
        self.cuts_done = 0
        self.range_requests = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(64 * 1024):
                if self.cut_after is not None and sent + len(data) > self.cut_after and self._take_cut():
                    client.sendall(data[: max(0, self.cut_after - sent)])
                    break
                if self.rate:
                    time.sleep(len(data) / self.rate)
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _take_cut(self) -> bool:
        with self.lock:
            if self.cuts == 0:
                return False
            self.cuts -= 1 if self.cuts > 0 else 0
            self.cuts_done += 1
            return True

    def _requests(self, client: socket.socket, upstream: socket.socket):
        try:
            while data := client.recv(64 * 1024):
                if b"\r\nrange: bytes=" in data.lower():
                    with self.lock:
                        self.range_requests += 1
                upstream.sendall(data)
        except OSError:
            pass

    def close(self):
        self.listener.close()


@pytest.fixture
def faulty_link():
    """Factory: faulty_link("127.0.0.1:PORT") -> a FaultyLink in front of it, closed at teardown."""
    links: list[FaultyLink] = []

    def make(upstream: str) -> FaultyLink:
        links.append(FaultyLink(upstream))
        return links[-1]

    yield make
    for link in links:
        link.close()


def wait_task(client, task_id: str, timeout: float = 120) -> dict:
    def ended():
        task = client.get(f"/api/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed") else None

    return wait_for(ended, timeout=timeout, message=f"task {task_id}")


def image_files(directory: Path, name: str) -> list[str]:
    """Everything in an image directory that belongs to `name`, finished or not (.NAME.import-*)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith((name + ".", f".{name}.")))

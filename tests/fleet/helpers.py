"""Shared bits of the fleet tests."""

import base64
import os
import struct
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def ssh_key(comment: str = "alice@laptop") -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + os.urandom(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def agent_info(cpu=4, mem=8192, disk=100000, engines=("docker", "qemu"), images=None) -> dict:
    return {
        "host_id": "h", "hostname": "h", "version": "0", "engines": list(engines), "engines_unavailable": {},
        "storage": "file", "vm_count": 0,
        "resources": {"cpu_total": cpu, "mem_total": mem, "disk_total": disk, "cpu_used": 0, "mem_used": 0,
                      "disk_used": 0},
        "images": images if images is not None else [
            {"name": "alpine", "engines": ["qemu"], "kind": "disk", "format": "qcow2", "size": 1,
             "description": ""}],
    }


def env_body(env_id="my-env", **vm):
    spec = {"image": "ttstack/tiny:latest", "engine": "docker", "cpu": 1, "mem": 64, "disk": 64}
    spec.update(vm)
    return {"id": env_id, "owner": "alice", "ssh_keys": [ssh_key()], "vms": [spec], "lifetime": 600}


@contextmanager
def local_http_server(respond):
    """A tiny HTTP server on 127.0.0.1 standing in for an agent: respond(method, path) -> (status,
    content_type, body bytes) answers every request. Yields its address (host:port)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            status, content_type, body = respond(self.command, self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""An HTTP listener that writes down who knocked: one line "METHOD PATH AUTHORIZATION" per request.

    python -m tests.netfleet.recorder ADDR PORT FILE [--agent]

Plain, it answers every request with a small HTML page, as any web server on a mistyped address would.
With --agent it impersonates a ttstack agent that accepts any key (an agent's /api/info, an empty /api/vms),
so a controller registers it and keeps calling it.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT_INFO = {
    "host_id": "recorder", "hostname": "recorder", "version": "0", "engines": ["docker"],
    "engines_unavailable": {}, "storage": "file", "vm_count": 0, "images": [],
    "resources": {"cpu_total": 1, "mem_total": 1024, "disk_total": 1024, "cpu_used": 0, "mem_used": 0,
                  "disk_used": 0},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("addr")
    parser.add_argument("port", type=int)
    parser.add_argument("file")
    parser.add_argument("--agent", action="store_true")
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            with lock, open(args.file, "a") as out:
                out.write(f"{self.command} {self.path} {self.headers.get('Authorization', '-')}\n")
            if args.agent and self.path.startswith("/api/"):
                body = json.dumps(AGENT_INFO if self.path.startswith("/api/info") else []).encode()
                kind = "application/json"
            else:
                body, kind = b"<html><body>hello</body></html>", "text/html"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _answer

        def log_message(self, *_):
            pass

    ThreadingHTTPServer((args.addr, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

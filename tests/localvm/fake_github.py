"""A local HTTP server that answers like the GitHub REST API for the calls localvm makes:

GET /orgs/{org}/packages?package_type=container   (paginated, Link: rel="next")
GET /orgs/{org}/packages/container/{name}/versions (paginated)

It checks the Bearer token (401 "Bad credentials" otherwise; token=None accepts any), pages `page_size` items
at a time whatever per_page asks, counts requests, and can be told to fail (`fail_status`).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PACKAGES = [
    {"name": "macos-sonoma-base", "description": "macOS Sonoma with Xcode CLT",
     "updated_at": "2024-05-01T10:00:00Z", "tags": ["latest", "14.5", "14.4", "14.3"]},
    {"name": "macos-sonoma-xcode", "description": None, "repository": {"description": "Sonoma + Xcode"},
     "updated_at": "2024-05-02T10:00:00Z", "tags": ["15.4", "latest", "15.3"]},
    {"name": "ubuntu", "description": "Linux, not a macOS image", "updated_at": "2024-01-01T00:00:00Z",
     "tags": ["latest"]},
    {"name": "macos-ventura-base", "description": "macOS Ventura", "updated_at": "2023-11-01T00:00:00Z",
     "tags": ["latest", "13.6"]},
    {"name": "macos-runner", "description": "runner", "updated_at": "2024-06-01T00:00:00Z", "tags": ["sonoma"]},
]


class FakeGitHub:
    def __init__(self, token: str = "ghp_testtoken1234567890", org: str = "cirruslabs", page_size: int = 2):
        self.token, self.org, self.page_size = token, org, page_size
        self.packages = [dict(p) for p in PACKAGES]
        self.fail_status: int | None = None
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler, status: int, body, headers: dict | None = None):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _page(self, handler, path: str, query: dict, items: list):
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * self.page_size
        chunk = items[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            keep = {k: v[0] for k, v in query.items() if k != "page"}
            qs = "&".join(f"{k}={v}" for k, v in keep.items())
            headers["Link"] = f'<{self.url}{path}?{qs}&page={page + 1}>; rel="next", <{self.url}{path}?page=1>; rel="first"'
        self._send(handler, 200, chunk, headers)

    def handle(self, handler):
        self.requests.append(handler.path)
        if self.fail_status:
            self._send(handler, self.fail_status, {"message": "Server Error"})
            return
        given = handler.headers.get("Authorization") or ""
        if given != f"Bearer {self.token}" and not (self.token is None and given.startswith("Bearer ")):
            self._send(handler, 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com"})
            return
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        if segments[:3] == ["orgs", self.org, "packages"] and len(segments) == 3:
            if query.get("package_type") != ["container"]:
                self._send(handler, 400, {"message": "package_type is required"})
                return
            body = [{"id": i, "name": p["name"], "package_type": "container", "visibility": "public",
                     "url": f"{self.url}/orgs/{self.org}/packages/container/{p['name']}",
                     "html_url": f"https://github.com/orgs/{self.org}/packages/container/package/{p['name']}",
                     "created_at": "2023-01-01T00:00:00Z", "updated_at": p["updated_at"],
                     **({"description": p["description"]} if p.get("description") else {}),
                     **({"repository": p["repository"]} if p.get("repository") else {})}
                    for i, p in enumerate(self.packages)]
            self._page(handler, parts.path, query, body)
            return
        if (len(segments) == 6 and segments[:3] == ["orgs", self.org, "packages"]
                and segments[3] == "container" and segments[5] == "versions"):
            package = next((p for p in self.packages if p["name"] == segments[4]), None)
            if package is None:
                self._send(handler, 404, {"message": "Package not found."})
                return
            # one version per tag, plus an untagged one, like a real container package
            versions = [{"id": i, "name": f"sha256:{i:064x}", "metadata": {"package_type": "container",
                         "container": {"tags": [tag]}}} for i, tag in enumerate(package["tags"])]
            versions.append({"id": 999, "name": "sha256:" + "f" * 64,
                             "metadata": {"package_type": "container", "container": {"tags": []}}})
            self._page(handler, parts.path, query, versions)
            return
        self._send(handler, 404, {"message": "Not Found"})

"""The controller's HTTP API as the client sees it: one httpx client, every error turned into a CliError with
the API's `detail` and the exit code it deserves."""

from __future__ import annotations

import re
from functools import cached_property
from urllib.parse import quote, urlencode

import httpx

from .config import Target
from .errors import EXIT_AUTH, EXIT_FAILED, CliError, exit_code_for

USER_AGENT = "ttstack-cli/0.1.0"
UNSUPPORTED = (404, 405, 501)


def error_detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    text = reply.text.strip().splitlines()[0][:200] if reply.text.strip() else ""
    return f"{reply.status_code} {reply.reason_phrase}" + (f": {text}" if text else "")


def _matches(template: str, parts: list[str]) -> bool:
    """'/api/envs/{id}/extend' against ['api', 'envs', 'demo', 'extend']."""
    pattern = template.strip("/").split("/")
    return len(pattern) == len(parts) and all(
        p == q or (p.startswith("{") and p.endswith("}") and q) for p, q in zip(pattern, parts, strict=True))


def segment(value) -> str:
    """One path segment: names with '/' (docker image references) travel encoded."""
    return quote(str(value), safe="")


class Api:
    def __init__(self, target: Target, timeout: float = 30):
        self.target = target
        headers = {"User-Agent": USER_AGENT}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self.http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout)

    def close(self):
        self.http.close()

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise CliError(f"{self.target.url} did not answer in time ({method} {path})") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise CliError(f"cannot reach {self.target.url}: {exc}") from exc

    def call(self, method: str, path: str, *, json=None, params=None, feature: str | None = None):
        """The reply's JSON (None when empty). `feature` names an operation some controllers do not offer
        yet: a 404/405/501 for a route the controller's schema does not list fails with exit 1 and says so."""
        reply = self._send(method, path, json=json, params=params)
        if reply.is_success:
            try:
                return reply.json() if reply.content else None
            except ValueError as exc:
                raise CliError(f"{method} {path} answered {reply.status_code} with no JSON: is "
                               f"{self.target.url} a ttstack controller?") from exc
        detail = error_detail(reply)
        if feature and reply.status_code in UNSUPPORTED and not self.offers(method, path, reply):
            raise CliError(f"{feature}: this controller does not offer {method} {path} "
                           f"({reply.status_code}: {detail})", EXIT_FAILED)
        if reply.status_code == 401:
            detail += f" (log in with: ttstack login {self.target.url} --profile {self.target.profile})"
        raise CliError(detail, exit_code_for(reply.status_code))

    def get(self, path: str, **params):
        return self.call("GET", path, params={k: v for k, v in params.items() if v not in (None, [], ())})

    def post(self, path: str, body=None, **kwargs):
        return self.call("POST", path, json=body, **kwargs)

    @cached_property
    def schema_paths(self) -> dict[str, set[str]] | None:
        """Path template -> methods, from the controller's OpenAPI schema (None when it cannot be read)."""
        try:
            reply = self.http.get("/api/schema/", params={"format": "json"}, timeout=15)
            paths = reply.json()["paths"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return {template: {m.upper() for m in ops} for template, ops in paths.items()}

    def offers(self, method: str, path: str, reply: httpx.Response) -> bool:
        """Does this controller have the route at all (as opposed to a missing object behind it)?"""
        if reply.status_code == 501:
            return False
        paths = self.schema_paths
        if paths is None:  # no schema: the controller's own text for an unknown route
            return not error_detail(reply).startswith("Not found: /")
        wanted = path.split("?", 1)[0].strip("/").split("/")
        return any(method.upper() in methods and _matches(template, wanted) for template, methods in paths.items())

    def ws_url(self, task_id: str) -> str:
        base = re.sub(r"^http", "ws", self.target.url)
        query = f"?{urlencode({'token': self.target.token})}" if self.target.token else ""
        return f"{base}/ws/tasks/{segment(task_id)}{query}"


def require_auth_ok(api: Api) -> dict:
    """The fleet's status, proving the URL and the token work (exit 4 for a wrong or missing token)."""
    reply = api._send("GET", "/api/status")
    if reply.status_code in (401, 403):
        raise CliError(f"{api.target.url} refused the token: {error_detail(reply)}", EXIT_AUTH)
    if not reply.is_success:
        raise CliError(f"{api.target.url}/api/status answered {error_detail(reply)}", exit_code_for(reply.status_code))
    try:
        return reply.json()
    except ValueError as exc:
        raise CliError(f"{api.target.url} is not a ttstack controller (/api/status is not JSON)") from exc

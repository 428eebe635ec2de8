"""The controller's only way to talk to agents: the agent JSON contract over httpx, Bearer key.

Every failure becomes AgentError with a message that names the host and says what happened
(unreachable, timed out, refused the key, answered 4xx/5xx with its detail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.conf import settings
from django.db import connections

from . import conf


class AgentError(Exception):
    def __init__(self, message: str, *, status: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.status, self.unreachable = status, unreachable


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)[:300]


def parallel(fn: Callable, items: Iterable) -> list:
    """fn(item) for every item, one thread per item (at most 32), results in order. Each thread closes
    its own database connections when done."""
    items = list(items)
    if not items:
        return []

    def run(item):
        try:
            return fn(item)
        finally:
            connections.close_all()  # this thread's connections only

    with ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix="fleet") as pool:
        return list(pool.map(run, items))


class AgentClient:
    def __init__(self, addr: str, api_key: str | None = None, *, timeout: float | None = None):
        self.addr = addr
        self.base_url = addr if "://" in addr else f"http://{addr}"
        key = api_key or conf.AGENT_KEY or settings.API_KEY
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = timeout or conf.AGENT_TIMEOUT
        self.http = httpx.Client(base_url=self.base_url, headers=headers,
                                 timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)))

    @classmethod
    def for_host(cls, host, **kwargs) -> AgentClient:
        return cls(host.addr, host.api_key or None, **kwargs)

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method: str, path: str, *, ok=(200,), timeout: float | None = None, **kwargs):
        try:
            response = self.http.request(method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs)
        except httpx.TimeoutException as exc:
            raise AgentError(f"agent {self.addr}: no answer to {method} {path} in time ({type(exc).__name__})",
                             unreachable=True) from exc
        except httpx.HTTPError as exc:
            raise AgentError(f"agent {self.addr} unreachable: {exc or type(exc).__name__}",
                             unreachable=True) from exc
        if response.status_code in ok:
            return response
        if response.status_code in (401, 403):
            raise AgentError(f"agent {self.addr} refused the controller's key ({response.status_code})",
                             status=response.status_code)
        raise AgentError(f"agent {self.addr}: {method} {path} -> {response.status_code}: {_detail(response)}",
                         status=response.status_code)

    @staticmethod
    def _json(response: httpx.Response, what: str):
        try:
            return response.json()
        except ValueError as exc:
            raise AgentError(f"agent answered {what} with something that is not JSON") from exc

    def info(self) -> dict:
        data = self._json(self._call("GET", "/api/info"), "/api/info")
        if not isinstance(data, dict) or "resources" not in data:
            raise AgentError(f"agent {self.addr}: /api/info does not look like a ttstack agent's")
        return data

    def list_vms(self) -> list[dict]:
        data = self._json(self._call("GET", "/api/vms"), "/api/vms")
        if isinstance(data, dict):  # tolerate a paginated or wrapped list
            data = data.get("results") or data.get("vms") or []
        return list(data)

    def create_vm(self, body: dict) -> dict:
        response = self._call("POST", "/api/vms", json=body, ok=(200, 201), timeout=conf.AGENT_CREATE_TIMEOUT)
        return self._json(response, "POST /api/vms")

    def get_vm(self, vm_id: str) -> dict | None:
        response = self._call("GET", f"/api/vms/{vm_id}", ok=(200, 404))
        return None if response.status_code == 404 else self._json(response, "GET /api/vms/{id}")

    def delete_vm(self, vm_id: str) -> bool:
        """True when the VM is gone (deleted now or unknown to the agent already)."""
        self._call("DELETE", f"/api/vms/{vm_id}", ok=(200, 202, 204, 404), timeout=conf.AGENT_CREATE_TIMEOUT)
        return True

    def stop_vm(self, vm_id: str) -> dict:
        response = self._call("POST", f"/api/vms/{vm_id}/stop", timeout=conf.AGENT_CREATE_TIMEOUT)
        return self._json(response, "stop")

    def start_vm(self, vm_id: str) -> dict:
        response = self._call("POST", f"/api/vms/{vm_id}/start", timeout=conf.AGENT_CREATE_TIMEOUT)
        return self._json(response, "start")

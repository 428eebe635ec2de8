"""The controller's only way to talk to agents: the agent JSON contract over httpx, Bearer key.

Every failure becomes AgentError with a message that names the host and says what happened
(unreachable, timed out, refused the key, answered 4xx/5xx with its detail, or answered something no
ttstack agent would: replies are checked before the controller keeps anything of them).
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.db import connections
from rest_framework import serializers

from agent.api.serializers import ImageSerializer
from ttproject.errors import UpstreamFailed

from . import conf

INT32, INT64 = 2**31 - 1, 2**63 - 1  # the largest values the host row's columns take


class ResourcesReply(serializers.Serializer):
    cpu_total = serializers.IntegerField(min_value=0, max_value=INT32)
    mem_total = serializers.IntegerField(min_value=0, max_value=INT64)
    disk_total = serializers.IntegerField(min_value=0, max_value=INT64)
    cpu_used = serializers.IntegerField(min_value=0, max_value=INT32, default=0)
    mem_used = serializers.IntegerField(min_value=0, max_value=INT64, default=0)
    disk_used = serializers.IntegerField(min_value=0, max_value=INT64, default=0)


class AgentInfoSerializer(serializers.Serializer):
    """What the controller keeps of an agent's GET /api/info (strings are cut to their columns later)."""

    host_id = serializers.CharField(allow_blank=True, default="")
    hostname = serializers.CharField(allow_blank=True, default="")
    version = serializers.CharField(allow_blank=True, default="")
    engines = serializers.ListField(child=serializers.CharField(max_length=16), default=list)
    engines_unavailable = serializers.DictField(child=serializers.CharField(allow_blank=True), default=dict)
    storage = serializers.CharField(allow_blank=True, max_length=16, default="")
    images = ImageSerializer(many=True, default=list)
    resources = ResourcesReply()
    vm_count = serializers.IntegerField(min_value=0, max_value=INT32, default=0)


class AgentError(UpstreamFailed):
    """An agent failed, did not answer, or answered what no ttstack agent would. `status`: its HTTP status."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)[:300]


def parallel(fn: Callable, items: Iterable) -> list:
    """fn(item) for every item, one thread per item (at most TTSTACK_AGENT_PARALLEL, which bounds the
    database connections of a job too), results in order. Each thread closes its own connections when done."""
    items = list(items)
    if not items:
        return []

    def run(item):
        try:
            return fn(item)
        finally:
            connections.close_all()  # this thread's connections only

    workers = min(max(1, conf.AGENT_PARALLEL), len(items))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet") as pool:
        return list(pool.map(run, items))


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs), made once: making it takes ~20 ms of CPU under the GIL,
    and every call to an agent has a client of its own (eight VMs created at once waited ~0.15 s for it)."""
    return httpx.create_ssl_context()


class AgentClient:
    """Calls one agent with that host's own key, and only that: the operators' key never leaves the
    controller (an agent, or a mistyped address, holding it would control the whole fleet). A host
    registered without a key is called without one."""

    def __init__(self, addr: str, api_key: str | None = None, *, timeout: float | None = None):
        self.addr = addr
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout or conf.AGENT_TIMEOUT
        self.http = httpx.Client(base_url=addr if "://" in addr else f"http://{addr}", headers=headers,
                                 timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)), verify=_tls())

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
            raise AgentError(
                f"agent {self.addr}: no answer to {method} {path} in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise AgentError(f"agent {self.addr} unreachable: {exc or type(exc).__name__}") from exc
        if response.status_code in ok:
            return response
        if response.status_code in (401, 403):
            raise AgentError(f"agent {self.addr} refused the host's key ({response.status_code}); register the "
                             "host with the agent's own key (`ttstack host add ADDR --key KEY`)",
                             status=response.status_code)
        raise AgentError(f"agent {self.addr}: {method} {path} -> {response.status_code}: {_detail(response)}",
                         status=response.status_code)

    def _json(self, response: httpx.Response, what: str):
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:
            raise AgentError(f"agent {self.addr} answered {what} with something that is not JSON") from exc

    def info(self) -> dict:
        """The agent's /api/info, checked: AgentError unless it has the fields the controller keeps,
        of the right types and within the bounds of the host row's columns."""
        reply = AgentInfoSerializer(data=self._json(self._call("GET", "/api/info"), "/api/info"))
        if not reply.is_valid():
            problems = json.dumps(reply.errors, separators=(",", ":"))[:500]
            raise AgentError(f"agent {self.addr}: /api/info does not look like a ttstack agent's: {problems}")
        return reply.validated_data

    def list_vms(self) -> list[dict]:
        """The agent's VMs (dicts with at least an `id`; `controller`: who asked for it, when known)."""
        data = self._json(self._call("GET", "/api/vms"), "/api/vms")
        if isinstance(data, dict):  # tolerate a paginated or wrapped list
            data = data.get("results") or data.get("vms") or []
        if not isinstance(data, list):
            raise AgentError(f"agent {self.addr}: /api/vms is not a list")
        return [vm for vm in data if isinstance(vm, dict)]

    def create_vm(self, body: dict) -> dict:
        response = self._call("POST", "/api/vms", json=body, ok=(200, 201), timeout=conf.AGENT_CREATE_TIMEOUT)
        return self._json(response, "POST /api/vms")

    def get_vm(self, vm_id: str) -> dict:
        return self._json(self._call("GET", f"/api/vms/{vm_id}"), "GET /api/vms/{id}")

    def console(self, vm_id: str, lines: int) -> dict:
        """The agent's GET /api/vms/{id}/console: {id, source, lines, text}."""
        data = self._json(self._call("GET", f"/api/vms/{vm_id}/console", params={"lines": lines}), "console")
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise AgentError(f"agent {self.addr}: the console of {vm_id} is not a ttstack console reply")
        return data

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

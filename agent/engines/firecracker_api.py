"""Firecracker's HTTP API on its Unix socket (httpx with a uds transport): 204 = done, anything else
raises with firecracker's fault_message."""

from __future__ import annotations

import httpx

from agent.engines.base import EngineError

API_TIMEOUT = 10.0


class FirecrackerAPI:
    def __init__(self, socket_path: str, timeout: float = API_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        """(HTTP status, JSON body or None); EngineError when the socket does not answer."""
        # Plain HTTP on a Unix socket: no TLS, so no certificates to load (httpx's default costs ~0.1 s a
        # client), and no proxy from the environment.
        transport = httpx.HTTPTransport(uds=self.socket_path, verify=False)
        try:
            with httpx.Client(transport=transport, base_url="http://localhost", timeout=self.timeout,
                              verify=False, trust_env=False) as client:
                response = client.request(method, path, json=body, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise EngineError(f"firecracker API {method} {path}: {exc}") from exc
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"fault_message": response.text}

    def put(self, path: str, body: dict) -> None:
        status, data = self.request("PUT", path, body)
        if status != 204:
            fault = (data or {}).get("fault_message", f"HTTP {status}")
            raise EngineError(f"firecracker refused PUT {path}: {fault}")

    def describe(self) -> dict:
        status, data = self.request("GET", "/")
        if status != 200 or not isinstance(data, dict):
            raise EngineError(f"firecracker GET / answered {status}: {data}")
        return data

"""The agent's image routes, as the controller calls them (over fleet.agent_client.AgentClient: the
host's own key, failures as AgentError naming the host)."""

from __future__ import annotations

from urllib.parse import quote

from .agent_client import AgentClient, AgentError

# A ticket may make the source hash an image it has no recorded sha256 for: that reads the whole file.
TICKET_TIMEOUT = 900.0


def _dict(client: AgentClient, response, what: str) -> dict:
    data = client._json(response, what)
    if not isinstance(data, dict):
        raise AgentError(f"agent {client.addr}: {what} did not answer an object")
    return data


def start_import(client: AgentClient, body: dict) -> str:
    """POST /api/images on the agent; the id of its import task."""
    data = _dict(client, client._call("POST", "/api/images", json=body, ok=(202,)), "POST /api/images")
    if not isinstance(data.get("task"), str):
        raise AgentError(f"agent {client.addr}: POST /api/images answered no task")
    return data["task"]


def task(client: AgentClient, task_id: str) -> dict:
    return _dict(client, client._call("GET", f"/api/tasks/{task_id}"), "GET /api/tasks")


def ticket(client: AgentClient, name: str) -> dict:
    """A URL path (and the image's sha256, size, format) another agent downloads the image from."""
    data = _dict(client, client._call("POST", f"/api/images/{quote(name, safe='')}/ticket",
                                      timeout=TICKET_TIMEOUT), "the image ticket")
    if not isinstance(data.get("path"), str) or not str(data["path"]).startswith("/api/images/"):
        raise AgentError(f"agent {client.addr}: the image ticket has no path")
    return data


def delete(client: AgentClient, name: str) -> bool:
    """True when the agent removed it, False when it had no such image."""
    response = client._call("DELETE", f"/api/images/{quote(name, safe='/:')}", ok=(200, 204, 404))
    return response.status_code != 404


def images(client: AgentClient) -> list[dict]:
    """The agent's images as its /api/info reports them (checked), for the host row."""
    return client.info()["images"]


def find(client: AgentClient, name: str) -> dict | None:
    """The agent's image `name` as it lists it now (not as the last heartbeat saw it), None without one."""
    listed = client._json(client._call("GET", "/api/images"), "GET /api/images")
    return next((i for i in listed if isinstance(i, dict) and i.get("name") == name), None) \
        if isinstance(listed, list) else None

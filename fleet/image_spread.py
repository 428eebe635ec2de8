"""Putting an image on hosts (operator): from a URL, or from a host that has it, agent to agent.

`start_spread` checks the request and submits one task, `fleet.image_spread`. Its job asks each target
agent to import the image (agent/image_import.py) and follows the agent's task, copying its progress into
this task's `result` (`hosts: {id: {state, bytes, total, percent, error}}`), so the task WebSocket shows
every host's progress. From a host, the source agent hands out a short-lived ticket (agent/image_serve.py)
and the target downloads from the source directly: the controller carries no image bytes and the target
never sees the source's key. An agent resumes a cut download itself (HTTP Range); a failed import is
started once more (with a new ticket) unless its checksum was wrong. A host that already has the image with
the same sha256 is left alone ("present").
"""

from __future__ import annotations

import copy
import threading
import time

from django.db import transaction

from agent.image_names import check_any
from ttproject import errors
from ttproject.tasks import runner
from ttproject.tasks.registry import job

from . import agent_images
from .agent_client import AgentClient, AgentError, parallel
from .choices import HostState
from .models import Host

ACTION = "fleet.image_spread"
IMPORT_ATTEMPTS = 2  # imports started per host; each one already resumes after cuts
POLL = 0.1  # seconds between two reads of an agent's import task (its end is seen that much late at most)
POLL_ERRORS = 5  # consecutive failed reads of the agent's task before the host counts as failed


def _has(host: Host, name: str) -> dict | None:
    return next((img for img in host.images or [] if isinstance(img, dict) and img.get("name") == name), None)


def _url(host: Host, path: str) -> str:
    return f"{host.addr if '://' in host.addr else 'http://' + host.addr}{path}"


def start_spread(data: dict):
    """Check name, hosts and source, then submit the task; Invalid/NotFound/Refused before anything starts.
    The job may run again (a worker that died): hosts that got the image meanwhile are then `present`."""
    name = check_any(data["name"])  # Invalid (400) unless a disk name or docker reference
    source = None
    if data.get("source_host") is not None:
        source = Host.objects.filter(pk=data["source_host"]).first()
        if source is None:
            raise errors.NotFound(f"source host {data['source_host']} not found")
        if source.state != HostState.ONLINE:
            raise errors.Refused(f"source host {source.addr} is {source.state}")
        if _has(source, name) is None:
            raise errors.Refused(f"source host {source.addr} has no image {name!r}")
    if data.get("hosts"):
        targets = list(Host.objects.filter(pk__in=data["hosts"]).order_by("id"))
        missing = sorted(set(data["hosts"]) - {h.pk for h in targets})
        if missing:
            raise errors.NotFound(f"host(s) {', '.join(map(str, missing))} not found")
        offline = [h.addr for h in targets if h.state != HostState.ONLINE]
        if offline:
            raise errors.Refused(f"host(s) {', '.join(offline)} are not online")
    else:
        targets = list(Host.objects.filter(state=HostState.ONLINE).order_by("id"))
    targets = [h for h in targets if source is None or h.pk != source.pk]
    if not targets:
        raise errors.Refused("no online host to put the image on")
    params = {"name": name, "url": data.get("url"), "sha256": data.get("sha256"), "format": data.get("format"),
              "source_host": source.pk if source else None, "hosts": [h.pk for h in targets]}
    with transaction.atomic():
        return runner.submit(ACTION, target=name, params=params)


class _Spread:
    def __init__(self, ctx):
        self.ctx, self.params = ctx, ctx.params
        self.name = self.params["name"]
        self.lock = threading.Lock()
        self.hosts = {str(pk): {"state": "pending", "bytes": 0, "total": None, "percent": None, "error": ""}
                      for pk in self.params["hosts"]}

    def result(self) -> dict:
        return {"name": self.name, "hosts": copy.deepcopy(self.hosts)}

    def update(self, host: Host, log: str | None = None, **fields):
        with self.lock:
            self.hosts[str(host.pk)].update(addr=host.addr, **fields)
            self.ctx.set(result=self.result())
        if log:
            self.ctx.log(f"{host.addr}: {log}")

    def source_body(self) -> tuple[dict, str]:
        """What the target agent is asked to import (the URL, or a fresh ticket URL on the source), and the
        sha256 a host lists for the image once it has it."""
        body = {"name": self.name}
        if self.params.get("source_host") is None:
            body.update(url=self.params["url"], sha256=self.params["sha256"])
            if self.params.get("format"):
                body["format"] = self.params["format"]
            return body, body["sha256"]
        source = Host.objects.get(pk=self.params["source_host"])
        with AgentClient.for_host(source) as client:
            ticket = agent_images.ticket(client, self.name)
        body.update(url=_url(source, ticket["path"]), sha256=ticket["sha256"], format=ticket["format"])
        return body, ticket.get("image_sha256") or ticket["sha256"]

    def follow(self, host: Host, client: AgentClient, task_id: str) -> dict:
        """The agent's import task at its end, its progress copied here meanwhile."""
        failures, logged_quarter = 0, 0
        while True:
            try:
                agent_task = agent_images.task(client, task_id)
                failures = 0
            except AgentError:
                failures += 1
                if failures >= POLL_ERRORS:
                    raise
                time.sleep(POLL)
                continue
            progress = agent_task.get("result") or {}
            if isinstance(progress, dict) and progress.get("bytes") and agent_task.get("status") == "running":
                percent = progress.get("percent")
                quarter = int(percent // 25) if isinstance(percent, int | float) else 0
                note = f"{percent}% ({progress.get('bytes')} bytes)" if quarter > logged_quarter else None
                logged_quarter = max(quarter, logged_quarter)
                self.update(host, note, state="copying", bytes=progress.get("bytes") or 0,
                            total=progress.get("total"), percent=percent)
            if agent_task.get("status") in ("completed", "failed"):
                return agent_task
            time.sleep(POLL)

    def one(self, host_id: int) -> str:
        """Put the image on one host; "" when it is there, else why not."""
        host = Host.objects.get(pk=host_id)
        error = ""
        with AgentClient.for_host(host, timeout=30) as client:
            for attempt in range(1, IMPORT_ATTEMPTS + 1):
                try:
                    body, listed_sha256 = self.source_body()
                    known = agent_images.find(client, self.name)
                    if known and known.get("sha256") and known["sha256"] == listed_sha256:
                        self.update(host, "has it already", state="present", percent=100.0)
                        return ""
                    agent_task = self.follow(host, client, agent_images.start_import(client, body))
                except (AgentError, errors.DomainError) as exc:
                    agent_task = {"status": "failed", "error": str(exc)}
                if agent_task["status"] == "completed":
                    done = agent_task.get("result") or {}
                    self.update(host, f"done ({done.get('bytes')} bytes)", state="done", bytes=done.get("bytes"),
                                total=done.get("total"), percent=100.0, error="")
                    _refresh_images(host, client)
                    return ""
                error = agent_task.get("error") or "the import failed"
                final = attempt == IMPORT_ATTEMPTS or "sha256 mismatch" in error or "exists on this host" in error
                self.update(host, f"import failed{'' if final else ', starting it again'}: {error}",
                            state="failed" if final else "retrying", error=error)
                if final:
                    break
        return error

    def run(self) -> dict:
        self.ctx.set(result=self.result())
        errors_by_host = dict(zip(self.params["hosts"], parallel(self.one, self.params["hosts"]), strict=True))
        failed = {pk: why for pk, why in errors_by_host.items() if why}
        if failed:
            words = "; ".join(f"{self.hosts[str(pk)].get('addr', pk)}: {why}" for pk, why in failed.items())
            raise runner.TaskFailed(f"image {self.name} is not on {len(failed)} of {len(self.hosts)} host(s): "
                                    f"{words}", result=self.result())
        return self.result()


def _refresh_images(host: Host, client: AgentClient) -> None:
    """The host's image list as the agent now reports it, so GET /api/images shows the new image at once."""
    try:
        Host.objects.filter(pk=host.pk).update(images=agent_images.images(client))
    except AgentError:
        pass  # the next heartbeat brings it


@job(ACTION)
def spread(ctx) -> dict:
    return _Spread(ctx).run()


def delete_everywhere(name: str, host_ids: list[int] | None) -> dict:
    """Remove an image from the given hosts (default: every host reporting it); Conflict, before any host
    is touched, while a live VM of this controller uses it there; the agents refuse too (their own VMs)."""
    from .models import Vm

    name = check_any(name)
    hosts = list(Host.objects.filter(pk__in=host_ids) if host_ids else
                 [h for h in Host.objects.order_by("id") if _has(h, name)])
    if host_ids and len(hosts) != len(set(host_ids)):
        raise errors.NotFound(f"host(s) {sorted(set(host_ids) - {h.pk for h in hosts})} not found")
    users = list(Vm.objects.filter(host__in=hosts, image=name, gone=False).values_list("id", flat=True)[:10])
    if users:
        raise errors.Conflict(f"image {name!r} is used by VM(s) {', '.join(users)}; delete them first")

    refused = []  # the agents' 409s: a VM of theirs uses it

    def remove(host: Host) -> str:
        with AgentClient.for_host(host) as client:
            try:
                deleted = agent_images.delete(client, name)
            except AgentError as exc:
                if exc.status == 409:
                    refused.append(host.addr)
                return f"error: {exc}"
            _refresh_images(host, client)
            return "deleted" if deleted else "absent"

    outcome = dict(zip([h.addr for h in hosts], parallel(remove, hosts), strict=True))
    if any(value.startswith("error") for value in outcome.values()):
        words = f"image {name!r}: " + "; ".join(f"{addr}: {v}" for addr, v in outcome.items())
        raise errors.Conflict(words) if refused else errors.UpstreamFailed(words)
    if "deleted" not in outcome.values():
        raise errors.NotFound(f"no host has image {name!r}")
    return {"name": name, "hosts": outcome}

"""An agent address that answers junk: registration is a clear 400 naming the problem, nothing is saved,
and the heartbeat records the error instead of failing. The "agent" is a tiny HTTP server on 127.0.0.1."""

import json
from contextlib import ExitStack

import pytest
from rest_framework.test import APIClient

from fleet.choices import HostState
from fleet.loop import Heartbeat
from fleet.models import Host

from .helpers import agent_info, local_http_server

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.urls("ttproject.urls.controller")]


@pytest.fixture
def junk_agent():
    """Factory: answer(body, status=200, content_type=...) -> the address of a server answering just that."""
    with ExitStack() as servers:
        def answer(body, status=200, content_type="application/json"):
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            return servers.enter_context(local_http_server(lambda method, path: (status, content_type, payload)))

        yield answer


def info_with(**changes):
    info = agent_info()
    for path, value in changes.items():
        node = info
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return info


JUNK = {
    "a list instead of an object": ([agent_info()], "Expected a dictionary"),
    "null": (None, "No data provided"),
    "an empty object": ({}, "resources"),
    "resources missing": ({k: v for k, v in agent_info().items() if k != "resources"}, "resources"),
    "resources a list": (info_with(resources=[4, 8192]), "resources"),
    "cpu_total a word": (info_with(resources__cpu_total="four"), "cpu_total"),
    "cpu_total past int32": (info_with(resources__cpu_total=2**31), "cpu_total"),
    "mem_total past int64": (info_with(resources__mem_total=10**30), "mem_total"),
    "disk_total negative": (info_with(resources__disk_total=-1), "disk_total"),
    "cpu_total a float": (info_with(resources__cpu_total=1e300), "cpu_total"),
    "engines a string": (info_with(engines="docker"), "engines"),
    "engines_unavailable a list": (info_with(engines_unavailable=["qemu"]), "engines_unavailable"),
    "an image without a name": (info_with(images=[{"engines": ["qemu"]}]), "images"),
    "vm_count huge": (info_with(vm_count=10**20), "vm_count"),
}


@pytest.mark.parametrize("body,named", JUNK.values(), ids=JUNK.keys())
def test_register_refuses_a_malformed_info_with_a_clear_400(settings, junk_agent, body, named):
    settings.API_KEY = None
    reply = APIClient().post("/api/hosts", {"addr": junk_agent(body)}, format="json")
    assert reply.status_code == 400, reply.content
    detail = reply.json()["detail"]
    assert detail.startswith("addr: cannot register") and "does not look like a ttstack agent" in detail
    assert named in detail
    assert Host.objects.count() == 0


@pytest.mark.parametrize("body,content_type,status,said", [
    (b"<html>hello</html>", "text/html", 200, "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 200, "not JSON"),
    (b"<h1>Internal Server Error</h1>", "text/html", 500, "-> 500"),
    (b'{"detail": "no"}', "application/json", 404, "-> 404: no"),
], ids=["html", "deep nesting", "a 500 page", "a 404"])
def test_register_refuses_what_is_not_an_agent(settings, junk_agent, body, content_type, status, said):
    settings.API_KEY = None
    reply = APIClient().post("/api/hosts", {"addr": junk_agent(body, status, content_type)}, format="json")
    assert reply.status_code == 400, reply.content
    assert said in reply.json()["detail"]
    assert Host.objects.count() == 0


def test_a_good_info_registers(settings, junk_agent):
    settings.API_KEY = None
    reply = APIClient().post("/api/hosts", {"addr": junk_agent(agent_info(cpu=6))}, format="json")
    assert reply.status_code == 201, reply.content
    assert reply.json()["resources"]["cpu_total"] == 6 and reply.json()["images"][0]["name"] == "alpine"


def test_heartbeat_records_a_malformed_info_as_the_hosts_error(junk_agent):
    host = Host(addr=junk_agent(info_with(resources__cpu_total="four")), state=HostState.ONLINE)
    host.apply_info(agent_info(cpu=2))
    host.save()
    Heartbeat().beat_host(host)
    host.refresh_from_db()
    assert "does not look like a ttstack agent" in host.error and "cpu_total" in host.error
    assert host.cpu_total == 2  # what the agent said before is kept

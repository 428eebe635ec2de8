"""The README's create request works as written on a 2-core host (issue 12: it was refused with "cpu 1 > 0
free"): the default CPU overcommit places it, and its docker VM reserves no disk."""

import json
import re

import pytest

from fleet.choices import EnvState
from tests.conftest import ROOT

from .helpers import ssh_key
from .test_api import api, make_host  # noqa: F401 - the fixture and the fake host of the API tests

pytestmark = [pytest.mark.django_db, pytest.mark.urls("ttproject.urls.controller")]


def readme_create_body(pub: str) -> dict:
    """The JSON of the README's `curl -X POST .../api/envs -d '...'`, with $PUB filled in as the shell would."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"curl -X POST \S+/api/envs .*?-d '(.*?)'\n", readme, re.S)
    assert match, "the README has no create example"
    return json.loads(match.group(1).replace("\"'\"$PUB\"'\"", json.dumps(pub)))


def test_the_readme_example_fits_a_2_core_host(api):  # noqa: F811
    host = make_host(cpu=2, mem=3072, disk=20 * 1024,
                     images=[{"name": "tiny", "engines": ["qemu"], "kind": "disk", "format": "qcow2", "size": 1,
                              "description": ""}])
    body = readme_create_body(ssh_key())
    reply = api.post("/api/envs", body, format="json")
    assert reply.status_code == 202, reply.json()
    env = reply.json()
    assert env["state"] == EnvState.CREATING and [vm["host"] for vm in env["vms"]] == [host.id, host.id]
    docker_vm, qemu_vm = env["vms"]
    assert docker_vm["engine"] == "docker" and docker_vm["disk"] == 0  # no disk asked: none reserved
    assert qemu_vm["engine"] == "qemu" and qemu_vm["disk"] == 1024

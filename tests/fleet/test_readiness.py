"""Ready means ready, through the controller: an environment is `active` only once its sshd VM answers SSH
(a real controller and agent, docker), a VM not ready in time fails it with its console's tail, and the
console of a VM is its owner's alone."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import wait_for
from tests.images.conftest import debian_docker_image, make_key, ssh  # noqa: F401 - the session fixture

from .helpers import env_body, local_http_server
from .test_acceptance import containers, wait_task
from .test_api import api, make_host  # noqa: F401 - the fixture and the fake host of the API tests

TINY = "ttstack/tiny:latest"
CLAIMS_SSHD = "ttstack-test/claims-sshd:latest"


@pytest.fixture
def one_host(role_server, docker_client):
    """Factory: a controller (with `env`) and one docker agent registered to it; the envs' containers are
    removed at teardown."""
    made = []

    def start(env: dict | None = None):
        agent = role_server("agent", env={"TTSTACK_ENGINES": "docker"})
        ctl = role_server("controller", env=env or {})
        with ctl.client() as c:
            assert c.post("/api/hosts", json={"addr": agent.addr, "api_key": agent.api_key}).status_code == 201
        env_id = f"rdy-{uuid.uuid4().hex[:8]}"
        made.append(env_id)
        return ctl, env_id

    yield start
    for env_id in made:
        for container in containers(docker_client, env_id):
            container.remove(force=True)


@pytest.mark.timeout(300)
def test_env_is_active_only_once_ssh_answers(one_host, debian_docker_image, tmp_path):  # noqa: F811
    key = make_key(tmp_path)
    ctl, env_id = one_host()
    with ctl.client() as c:
        body = {"id": env_id, "ssh_keys": [key.with_suffix(".pub").read_text()], "lifetime": 600,
                "vms": [{"image": "debian-12", "engine": "docker", "cpu": 1, "mem": 256},
                        {"image": TINY, "engine": "docker", "cpu": 1, "mem": 64, "ports": [80]}]}
        r = c.post("/api/envs", json=body)
        assert r.status_code == 202, r.text
        seen = []

        def settled():
            env = c.get(f"/api/envs/{env_id}").json()
            seen.append((env["state"], env["vms"][0]["ssh"] and env["vms"][0]["ssh"]["ready"]))
            return env if env["state"] not in ("creating",) else None

        env = wait_for(settled, timeout=240, interval=0.2, message=f"{env_id} settled")
        assert env["state"] == "active", env["error"]
        assert all(ready for state, ready in seen if state == "active")
        sshd_vm, tiny_vm = env["vms"]
        assert sshd_vm["ssh"]["ready"] and sshd_vm["ssh"]["host"] == "127.0.0.1"
        assert sshd_vm["ssh"]["host_key_fingerprints"][0].startswith("SHA256:")
        assert tiny_vm["ssh"] is None and tiny_vm["port_map"].keys() == {"80"} and tiny_vm["disk"] == 0
        assert ssh(sshd_vm["ssh"]["port"], key, "hostname").stdout.strip() == sshd_vm["hostname"]
        task = wait_task(c, env["task"])
        assert any("ready after" in line for line in json.dumps(task).split("\\n")), task

        console = c.get(f"/api/vms/{sshd_vm['id']}/console").json()
        assert "SSH key(s) installed" in console["text"]


@pytest.fixture
def claims_sshd(docker_client):
    """tiny relabelled as an sshd image (io.ttstack.ssh-port=22): the agent watches its port 22, where nothing
    ever sends a banner. Built from the local tiny image, nothing pulled."""
    docker_client.images.get(TINY)  # fails loudly when the image build did not run
    dockerfile = f"FROM {TINY}\nLABEL io.ttstack.ssh-port=22\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=CLAIMS_SSHD, pull=False, rm=True)
    yield CLAIMS_SSHD
    docker_client.images.remove(image.id, force=True)


@pytest.mark.timeout(300)
def test_vm_not_ready_in_time_fails_the_env_with_its_console(one_host, claims_sshd, docker_client):
    ctl, env_id = one_host({"TTSTACK_SSH_READY_TIMEOUT": "3"})
    with ctl.client() as c:
        r = c.post("/api/envs", json=env_body(env_id, image=claims_sshd, ports=[80]))
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task"], timeout=120)
        assert task["status"] == "failed"
        env = c.get(f"/api/envs/{env_id}").json()
        assert env["state"] == "failed"
        assert f"{env_id}-0: not ready within" in env["error"] and "no SSH banner" in env["error"]
        assert "last console lines:\n" in env["error"]
        assert env["vms"][0]["ssh"]["ready"] is False
        wait_for(lambda: containers(docker_client, env_id) == [], timeout=60, message="rolled back")


@pytest.mark.timeout(300)
def test_port_22_of_an_image_without_sshd_is_published_not_awaited(one_host):
    # tiny declares no sshd: a 22 in `ports` is only a port to publish, so the env does not wait for a banner
    ctl, env_id = one_host({"TTSTACK_SSH_READY_TIMEOUT": "3"})
    with ctl.client() as c:
        r = c.post("/api/envs", json=env_body(env_id, image=TINY, ports=[22, 80]))
        task = wait_task(c, r.json()["task"], timeout=120)
        assert task["status"] == "completed", task
        env = c.get(f"/api/envs/{env_id}").json()
        assert env["state"] == "active"
        [vm] = env["vms"]
        assert set(vm["port_map"]) == {"22", "80"} and vm["ssh"]["ready"] is None
        assert c.post(f"/api/envs/{env_id}/stop").status_code == 202
        wait_for(lambda: c.get(f"/api/envs/{env_id}").json()["state"] == "stopped", timeout=60, message="stopped")
        task = wait_task(c, c.post(f"/api/envs/{env_id}/start").json()["task"], timeout=120)
        assert task["status"] == "completed", task
        assert c.get(f"/api/envs/{env_id}").json()["vms"][0]["ssh"]["ready"] is None  # still not watched


@pytest.mark.django_db
@pytest.mark.urls("ttproject.urls.controller")
def test_console_is_the_owners_alone(api):  # noqa: F811
    asked = []

    def agent(method, path):
        asked.append(path)
        return 200, "application/json", json.dumps({"id": "alice-env-0", "source": "console.log", "lines": 7,
                                                    "text": "login:\n"}).encode()

    with local_http_server(agent) as addr:
        make_host(addr, cpu=8, mem=8192)
        assert api.post("/api/envs", env_body("alice-env"), format="json").status_code == 202
        bob = APIClient()
        bob.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=User.objects.create_user('bob')).key}")
        assert bob.get("/api/vms/alice-env-0/console").status_code == 404
        reply = api.get("/api/vms/alice-env-0/console", {"lines": 7})
        assert reply.status_code == 200 and reply.json()["text"] == "login:\n"
        assert asked == ["/api/vms/alice-env-0/console?lines=7"]
        assert api.get("/api/vms/alice-env-0/console", {"lines": "many"}).status_code == 400
        assert api.get("/api/vms/nobody-0/console").status_code == 404

"""The controller API in-process: validation, placement replies, visibility, query counts.
Jobs are not run here (their tasks stay pending); the acceptance tests run them against real agents."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from fleet import placement
from fleet.capacity import host_caps
from fleet.choices import EnvState, HostState, VmState
from fleet.models import Environment, Host, Vm
from tests.conftest import require, wait_for
from ttproject.tasks.models import Task, TaskStatus, Worker

from .helpers import agent_info, env_body, ssh_key

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.urls("ttproject.urls.controller")]


@pytest.fixture(autouse=True)
def no_cpu_overcommit(settings):
    """The capacity figures below count one vCPU per host CPU (the default places two)."""
    settings.FLEET_CPU_OVERCOMMIT = 1.0


@pytest.fixture
def api(settings):
    settings.API_KEY = "k"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer k")
    return client


def make_host(addr="127.0.0.1:1", **info_kw) -> Host:
    host = Host(addr=addr, state=HostState.ONLINE)
    host.apply_info(agent_info(**info_kw))
    host.save()
    return host


def nothing_saved():
    assert Environment.objects.count() == 0 and Vm.objects.count() == 0 and Task.objects.count() == 0


def test_create_places_reserves_and_answers_202(api):
    h1, h2 = make_host("127.0.0.1:1", cpu=2), make_host("127.0.0.1:2", cpu=2)
    body = env_body(cpu=2)
    body["vms"] = body["vms"] * 2
    r = api.post("/api/envs", body, format="json")
    assert r.status_code == 202, r.json()
    data = r.json()
    assert data["state"] == EnvState.CREATING and data["task"]
    assert {vm["host"] for vm in data["vms"]} == {h1.id, h2.id}
    assert [vm["id"] for vm in data["vms"]] == ["my-env-0", "my-env-1"]
    assert Task.objects.get(pk=data["task"]).action == "fleet.env_create"
    # both hosts are now full: the next request is refused with a reason per host
    r = api.post("/api/envs", env_body("other"), format="json")
    assert r.status_code == 422
    assert "not enough capacity" in r.json()["detail"] and "127.0.0.1:2" in r.json()["detail"]


def test_defaults_of_the_contract(api):
    make_host(cpu=64, mem=1 << 20, disk=1 << 30)
    body = {"id": "d", "ssh_keys": [ssh_key()], "vms": [{"image": "alpine"}]}
    r = api.post("/api/envs", body, format="json")
    assert r.status_code == 202, r.json()
    vm = r.json()["vms"][0]
    assert (vm["engine"], vm["cpu"], vm["mem"], vm["disk"], vm["ports"], vm["deny_outgoing"]) == \
        ("qemu", 2, 1024, 40960, [22], False)
    env = Environment.objects.get(pk="d")
    assert env.lifetime == 21600 and env.expires_at is not None


def test_lifetime_zero_never_expires(api):
    make_host()
    body = env_body()
    body["lifetime"] = 0
    assert api.post("/api/envs", body, format="json").status_code == 202
    assert Environment.objects.get().expires_at is None


@pytest.mark.parametrize("change,field", [
    ({"id": ".hidden"}, "id"),
    ({"id": "a/b"}, "id"),
    ({"id": "x" * 129}, "id"),
    ({"id": ""}, "id"),
    ({"id": "tnl\n"}, "id"),
    ({"id": "a\nb"}, "id"),
    ({"vms": [{"image": "alp\nine"}]}, "vms"),
    ({"vms": [{"image": "two words"}]}, "vms"),
    ({"vms": []}, "vms"),
    ({"ssh_keys": []}, "ssh_keys"),
    ({"ssh_keys": ["ssh-ed25519 not-base64!"]}, "ssh_keys"),
    ({"ssh_keys": ["hello"]}, "ssh_keys"),
    ({"lifetime": -1}, "lifetime"),
    ({"lifetime": 10**12}, "lifetime"),
    ({"vms": [{"image": "alpine", "engine": "vmware"}]}, "vms"),
    ({"vms": [{"image": "alpine", "cpu": -2}]}, "vms"),
    ({"vms": [{"image": "alpine", "cpu": 0}]}, "vms"),
    ({"vms": [{"image": "alpine", "mem": 10**12}]}, "vms"),
    ({"vms": [{"image": "alpine", "disk": "lots"}]}, "vms"),
    ({"vms": [{"image": "alpine", "ports": [70000]}]}, "vms"),
    ({"vms": [{"engine": "docker"}]}, "vms"),
])
def test_bad_input_is_refused_and_nothing_saved(api, change, field):
    make_host()
    body = env_body()
    body.update(change)
    r = api.post("/api/envs", body, format="json")
    assert r.status_code == 400, r.json()
    assert field in r.json()["detail"]
    nothing_saved()


@pytest.mark.parametrize("engine, mem, says", [
    ("qemu", 63, "at least 64 MiB for the qemu engine (a guest kernel)"),
    ("firecracker", 32, "at least 64 MiB for the firecracker engine (a guest kernel)"),
    ("docker", 15, "at least 16 MiB (64 MiB for qemu, firecracker, bhyve)"),
    ("jail", 0, "at least 16 MiB (64 MiB for qemu, firecracker, bhyve)"),
])
def test_too_little_memory_is_refused_as_the_agent_refuses_it(api, engine, mem, says):
    from agent.api.serializers import CreateVmSerializer

    make_host()
    r = api.post("/api/envs", env_body(image="alpine", engine=engine, mem=mem), format="json")
    assert r.status_code == 400 and says in r.json()["detail"], r.json()
    nothing_saved()
    on_the_agent = CreateVmSerializer(data={"image": "alpine", "engine": engine, "mem": mem})
    assert not on_the_agent.is_valid() and on_the_agent.errors["mem"] == [says]


def test_the_least_memory_is_accepted(api):
    make_host()
    assert api.post("/api/envs", env_body("c", engine="docker", mem=16), format="json").status_code == 202
    assert api.post("/api/envs", env_body("q", image="alpine", engine="qemu", mem=64),
                    format="json").status_code == 202


def test_duplicate_id_is_409(api):
    make_host()
    assert api.post("/api/envs", env_body(), format="json").status_code == 202
    r = api.post("/api/envs", env_body(), format="json")
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert Environment.objects.count() == 1 and Task.objects.count() == 1


def test_nothing_fits_is_422_with_reason_per_host(api):
    make_host("127.0.0.1:1", engines=("qemu",))
    offline = make_host("127.0.0.1:2")
    Host.objects.filter(pk=offline.pk).update(state=HostState.OFFLINE)
    drained = make_host("127.0.0.1:3")
    Host.objects.filter(pk=drained.pk).update(drain=True)
    r = api.post("/api/envs", env_body(), format="json")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "engine docker not available" in detail and "offline" in detail and "draining" in detail
    nothing_saved()


def test_qemu_image_absent_is_422(api):
    make_host()
    r = api.post("/api/envs", env_body(engine="qemu", image="alpine-cloud"), format="json")
    assert r.status_code == 422 and "image alpine-cloud not present" in r.json()["detail"]
    nothing_saved()


def test_no_hosts_is_422(api):
    r = api.post("/api/envs", env_body(), format="json")
    assert r.status_code == 422 and "no hosts" in r.json()["detail"]


def test_unknown_ids_are_404(api):
    for path in ("/api/envs/nope", "/api/vms/nope", "/api/hosts/99", "/api/hosts/abc", "/api/hosts/" + "9" * 30,
                 "/api/envs/tnl%0A", "/api/vms/.hidden-0"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["detail"], path
    assert api.delete("/api/envs/nope").status_code == 404
    assert api.post("/api/envs/nope/stop").status_code == 404


def test_key_required(api):
    assert APIClient().get("/api/envs").status_code in (401, 403)
    assert APIClient().get("/").status_code == 200


def test_stop_while_creating_is_409(api):
    make_host()
    api.post("/api/envs", env_body(), format="json")
    r = api.post("/api/envs/my-env/stop")
    assert r.status_code == 409 and "creating" in r.json()["detail"]


def test_delete_answers_202_with_task_and_is_idempotent(api):
    make_host()
    api.post("/api/envs", env_body(), format="json")
    r = api.delete("/api/envs/my-env")
    assert r.status_code == 202 and r.json()["state"] == EnvState.DELETING
    first = r.json()["task"]
    again = api.delete("/api/envs/my-env")
    assert again.status_code == 202 and again.json()["task"] == first


def test_owners_see_only_their_environments(api):
    make_host(cpu=64, mem=1 << 20)
    bob = User.objects.create_user("bob")
    token = Token.objects.create(user=bob)
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    api.post("/api/envs", env_body("alice-env"), format="json")
    r = owner.post("/api/envs", {**env_body("bob-env"), "owner": "mallory"}, format="json")
    assert r.status_code == 202 and r.json()["owner"] == "bob"
    assert [e["id"] for e in owner.get("/api/envs").json()] == ["bob-env"]
    assert owner.get("/api/envs/alice-env").status_code == 404
    assert owner.get("/api/vms/alice-env-0").status_code == 404
    assert owner.get("/api/hosts").status_code == 403
    assert {e["id"] for e in api.get("/api/envs").json()} == {"alice-env", "bob-env"}


def test_list_query_count_is_constant(api, django_assert_num_queries):
    make_host(cpu=1000, mem=1 << 30, disk=1 << 40)
    for i in range(3):
        api.post("/api/envs", env_body(f"e{i}"), format="json")
    # envs, then their VMs with their hosts' addresses: two queries however many rows
    with django_assert_num_queries(2):
        assert len(api.get("/api/envs").json()) == 3
    for i in range(3, 30):
        body = env_body(f"e{i}")
        body["vms"] = body["vms"] * 3
        api.post("/api/envs", body, format="json")
    with django_assert_num_queries(2):
        data = api.get("/api/envs").json()
    assert len(data) == 30 and len(data[0]["vms"]) == 3


def test_filters(api):
    make_host(cpu=64, mem=1 << 20)
    api.post("/api/envs", env_body("a"), format="json")
    Environment.objects.filter(pk="a").update(state=EnvState.ACTIVE)
    api.post("/api/envs", env_body("b"), format="json")
    assert [e["id"] for e in api.get("/api/envs?state=active").json()] == ["a"]
    assert api.get("/api/envs?state=bogus").status_code == 400


def test_hosts_unreachable_invalid_and_delete_rules(api):
    from tests.conftest import free_port

    addr = f"127.0.0.1:{free_port()}"
    r = api.post("/api/hosts", {"addr": addr}, format="json")
    assert r.status_code == 400 and "cannot register" in r.json()["detail"]
    assert api.post("/api/hosts", {"addr": "not an addr"}, format="json").status_code == 400
    assert api.post("/api/hosts", {}, format="json").status_code == 400
    r = api.post("/api/hosts", {"addr": addr, "api_key": "clé ±"}, format="json")  # goes in a header: ASCII
    assert r.status_code == 400 and "api_key" in r.json()["detail"]
    assert Host.objects.count() == 0
    host = make_host()
    assert api.post("/api/hosts", {"addr": host.addr}, format="json").status_code == 409
    api.post("/api/envs", env_body(), format="json")
    r = api.delete(f"/api/hosts/{host.id}")
    assert r.status_code == 409 and "1 VM" in r.json()["detail"]
    Vm.objects.update(gone=True, state=VmState.DELETED)
    assert api.delete(f"/api/hosts/{host.id}").status_code == 204
    r = api.patch("/api/hosts/99", {"drain": True}, format="json")
    assert r.status_code == 404


def test_drain_via_patch_stops_placements(api):
    host = make_host()
    r = api.patch(f"/api/hosts/{host.id}", {"drain": True, "addr": "10.9.9.9:1"}, format="json")
    assert r.status_code == 200 and r.json()["drain"] is True
    assert r.json()["addr"] == host.addr  # the address stays the one registered
    assert api.post("/api/envs", env_body(), format="json").status_code == 422


def test_status_and_images(api):
    make_host("127.0.0.1:1", cpu=4, mem=4096)
    h2 = make_host("127.0.0.1:2", cpu=4, mem=4096)
    Host.objects.filter(pk=h2.pk).update(state=HostState.OFFLINE)
    api.post("/api/envs", env_body(cpu=3, mem=1000), format="json")
    s = api.get("/api/status").json()
    assert (s["hosts"], s["hosts_online"], s["total_envs"], s["total_vms"]) == (2, 1, 1, 1)
    assert (s["cpu_total"], s["cpu_used"], s["mem_total"], s["mem_used"]) == (8, 3, 8192, 1000)
    images = api.get("/api/images").json()
    assert images[0]["name"] == "alpine" and len(images[0]["hosts"]) == 2


def test_status_warns_of_tasks_that_no_worker_runs(api, settings):
    settings.TASK_PENDING_TIMEOUT = 60
    assert api.get("/api/status").json()["warnings"] == []
    task = Task.objects.create(action="fleet.env_create", target="e", status=TaskStatus.PENDING)
    [warning] = api.get("/api/status").json()["warnings"]  # no worker row at all: nothing will run it
    assert warning.startswith("1 task(s) pending and no job worker heard from") and "TTSTACK_WORKER_TIMEOUT" in warning
    Worker.objects.create(name="h:1", last_heartbeat=timezone.now())
    assert api.get("/api/status").json()["warnings"] == []  # a live worker, the task just came
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    [warning] = api.get("/api/status").json()["warnings"]  # a live worker that does not take it
    assert "pending for more than TTSTACK_TASK_PENDING_TIMEOUT (60 s) although a worker is alive" in warning
    Worker.objects.filter(pk="h:1").update(last_heartbeat=timezone.now() - timedelta(seconds=settings.WORKER_TIMEOUT + 1))
    assert "no job worker heard from" in api.get("/api/status").json()["warnings"][0]


def test_stopped_vms_keep_only_their_disk():
    host = make_host(cpu=4, mem=4096, disk=1000)
    env = Environment.objects.create(id="e", ssh_keys=[])
    Vm.objects.create(id="e-0", env=env, host=host, image="i", engine="docker", cpu=2, mem=1000, disk=300,
                      state=VmState.STOPPED)
    Vm.objects.create(id="e-1", env=env, host=host, image="i", engine="docker", cpu=1, mem=500, disk=200,
                      state=VmState.RUNNING)
    Vm.objects.create(id="e-2", env=env, host=host, image="i", engine="docker", cpu=1, mem=500, disk=200,
                      state=VmState.FAILED, gone=True)
    from fleet.models import reserved_by_host

    cap = host_caps([host], reserved_by_host())[0]
    assert (cap.cpu_free, cap.mem_free, cap.disk_free) == (3, 3596, 500)


def test_start_refused_when_the_stopped_vms_no_longer_fit(api):
    """Stopped VMs free cpu/mem; once placement gave it away, start is 422 and the env stays stopped."""
    host = make_host(cpu=2, mem=1024)
    assert api.post("/api/envs", env_body("a", cpu=2, mem=512), format="json").status_code == 202
    Vm.objects.filter(env_id="a").update(state=VmState.STOPPED)
    Environment.objects.filter(pk="a").update(state=EnvState.STOPPED)
    assert api.post("/api/envs", env_body("b", cpu=1, mem=700), format="json").status_code == 202
    tasks = Task.objects.count()
    r = api.post("/api/envs/a/start")
    assert r.status_code == 422, r.json()
    detail = r.json()["detail"]
    assert host.addr in detail and "cpu 2 > 1 free" in detail and "mem 512 > 324 MiB free" in detail
    assert Environment.objects.get(pk="a").state == EnvState.STOPPED
    assert Task.objects.count() == tasks
    # room again once b is gone: the start is accepted, and its VMs reserve cpu/mem at once
    Vm.objects.filter(env_id="b").update(gone=True, state=VmState.DELETED)
    r = api.post("/api/envs/a/start")
    assert r.status_code == 202 and r.json()["state"] == EnvState.STARTING
    assert api.post("/api/envs", env_body("c", cpu=1, mem=64), format="json").status_code == 422


def test_start_of_a_running_env_needs_no_room(api):
    make_host(cpu=1)
    api.post("/api/envs", env_body("a", cpu=1), format="json")
    Vm.objects.update(state=VmState.RUNNING)
    Environment.objects.update(state=EnvState.ACTIVE)
    assert api.post("/api/envs/a/start").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_host_delete_locks_the_host_row(api, monkeypatch):
    """A placement on the host is under way (its transaction holds the host rows, its VMs not written
    yet) when the host is deleted: the delete waits for it, then sees the VM and answers 409. Without the
    delete's row lock it would count no VM and remove the host from under the placement."""
    require("postgres")
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite's IMMEDIATE transactions serialise writers instead); "
                    "the PostgreSQL pass runs this (-m postgres with DATABASE_URL)")
    host = make_host()
    placed, finish = threading.Event(), threading.Event()
    place = placement.place

    def place_then_wait(*args, **kwargs):
        chosen = place(*args, **kwargs)
        placed.set()
        assert finish.wait(30), "the test never let the placement finish"
        return chosen

    monkeypatch.setattr(placement, "place", place_then_wait)
    body = env_body(cpu=1)
    body["lifetime"] = 600
    replies = {}

    def in_thread(name, call):
        try:
            replies[name] = call()
        finally:
            connections.close_all()

    creating = threading.Thread(target=in_thread, args=("create", lambda: api.post("/api/envs", body, format="json")))
    deleting = threading.Thread(target=in_thread, args=("delete", lambda: api.delete(f"/api/hosts/{host.id}")))
    creating.start()
    try:
        assert placed.wait(30), "the placement did not start"
        deleting.start()
        wait_for(lambda: _waiting_on_a_lock() >= 1, timeout=30, message="the host delete to wait on the lock")
    finally:
        finish.set()
        creating.join(30)
        deleting.join(30)
    assert replies["create"].status_code == 202, replies["create"].content
    assert replies["delete"].status_code == 409, replies["delete"].content
    assert "1 VM" in replies["delete"].json()["detail"]
    assert Vm.objects.get().host_id == host.id


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]

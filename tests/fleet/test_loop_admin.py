"""The fleet loop's pieces and the admin console, in-process (no agents)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from fleet import lifecycle, loop
from fleet.choices import EnvState, HostState, VmState
from fleet.identity import controller_id
from fleet.models import Environment, Host, Lease, Vm, derive_env_state
from fleet.models_governance import Event
from ttproject.tasks.models import Task

from .helpers import agent_info

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def host():
    h = Host(addr="127.0.0.1:1", state=HostState.ONLINE)
    h.apply_info(agent_info())
    h.save()
    return h


def make_env(host, env_id="e", state=EnvState.ACTIVE, n=2, **kw):
    env = Environment.objects.create(id=env_id, ssh_keys=[], state=state, **kw)
    for i in range(n):
        Vm.objects.create(id=f"{env_id}-{i}", env=env, index=i, host=host, image="i", engine="docker", cpu=1,
                          mem=64, disk=64, state=VmState.RUNNING)
    return env


def test_expire_claims_and_submits_once(host):
    make_env(host, "old", expires_at=timezone.now() - timedelta(seconds=1))
    make_env(host, "young", expires_at=timezone.now() + timedelta(hours=1))
    make_env(host, "forever", expires_at=None)
    assert lifecycle.expire_envs() == ["old"]
    assert lifecycle.expire_envs() == []  # claimed already: no second delete task
    assert Environment.objects.get(pk="old").state == EnvState.DELETING
    assert list(Task.objects.values_list("action", "target")) == [("fleet.env_delete", "old")]


def test_reconcile_marks_lost_vms_failed_and_tracks_orphans(host):
    env = make_env(host)
    hb = loop.Heartbeat()
    mine = controller_id()
    agent_vms = [{"id": "e-0", "state": "stopped", "port_map": {"80": 20001}, "ip": "172.17.0.2"},
                 {"id": "stray", "state": "running", "controller": mine},
                 {"id": "theirs", "state": "running", "controller": "ctl-another"},
                 {"id": "by-hand", "state": "running"}]
    hb.reconcile(host, agent_vms)
    vm0, vm1 = Vm.objects.order_by("index")
    # each state change the heartbeat saw is an event, for the env's owner
    seen = sorted((e.target, e.outcome) for e in Event.objects.filter(action="vm.state"))
    assert seen == [("vm/e-0", VmState.STOPPED), ("vm/e-1", VmState.FAILED)]
    assert (vm0.state, vm0.port_map, vm0.ip) == (VmState.STOPPED, {"80": 20001}, "172.17.0.2")
    assert (vm1.state, vm1.gone) == (VmState.FAILED, True) and "no longer" in vm1.error
    env.refresh_from_db()
    assert env.state == EnvState.FAILED
    assert (host.id, "stray") in hb.orphans  # this controller's: destroyed only after the grace period
    # Not made by this controller (issue 11): never orphans, whatever the grace.
    assert (host.id, "theirs") not in hb.orphans and (host.id, "by-hand") not in hb.orphans
    hb.reconcile(host, [{"id": "e-0", "state": "stopped"}])
    assert (host.id, "stray") not in hb.orphans


def test_reconcile_leaves_envs_with_a_running_job_alone(host):
    lifecycle.stop_env(make_env(host))  # its stop task is pending: the environment is busy
    loop.Heartbeat().reconcile(host, [])
    assert set(Vm.objects.values_list("state", flat=True)) == {VmState.RUNNING}


def test_reconcile_leaves_rows_written_after_the_agent_was_asked_alone(host):
    """A VM created (row written running) between the agent's answer and reconcile is not lost."""
    make_env(host, "old", n=1)
    since = timezone.now()  # when the heartbeat asked the agent, which then had neither VM
    make_env(host, "new", n=1)
    Vm.objects.filter(env_id="old").update(updated_at=since - timedelta(seconds=1))
    Vm.objects.filter(env_id="new").update(updated_at=since + timedelta(milliseconds=1))
    hb = loop.Heartbeat()
    hb.reconcile(host, [], since=since)
    new = Vm.objects.get(env_id="new")
    assert (new.state, new.gone, new.error) == (VmState.RUNNING, False, "")
    assert Environment.objects.get(pk="new").state == EnvState.ACTIVE
    old = Vm.objects.get(env_id="old")
    assert (old.state, old.gone) == (VmState.FAILED, True)  # older than the answer: really lost
    # and a newer row is not an orphan either, once the agent lists it
    hb.reconcile(host, [{"id": "new-0", "state": "running"}], since=since)
    assert not hb.orphans


def test_orphans_are_guarded_by_the_heartbeat_lock(host):
    """Hosts beat in parallel threads: collect_orphans touches the shared dict only under the lock."""
    import threading

    hb = loop.Heartbeat()
    hb.orphans[(host.id, "gone-meanwhile")] = 0.0
    with hb.lock:
        worker = threading.Thread(target=hb.collect_orphans, args=(host, {"stray"}))
        worker.start()
        worker.join(0.2)
        assert worker.is_alive() and list(hb.orphans) == [(host.id, "gone-meanwhile")]
    worker.join()
    assert list(hb.orphans) == [(host.id, "stray")]


def test_lease_has_one_holder(monkeypatch):
    assert loop.take_lease(15)
    assert loop.take_lease(15)  # renewal by the holder
    monkeypatch.setattr(loop, "HOLDER", "other:1")
    assert not loop.take_lease(15)
    Lease.objects.update(until=timezone.now() - timedelta(seconds=1))
    assert loop.take_lease(15)


def test_derive_env_state():
    assert derive_env_state(["running", "running"], "creating") == "active"
    assert derive_env_state(["stopped", "stopped"], "active") == "stopped"
    assert derive_env_state(["running", "stopped"], "active") == "active"
    assert derive_env_state(["running", "failed"], "active") == "failed"
    assert derive_env_state(["pending", "running"], "active") == "creating"
    assert derive_env_state([], "deleting") == "deleting"


@pytest.mark.urls("ttproject.urls.controller")
def test_admin_pages_and_actions(client, host):
    User.objects.create_superuser("root", "r@x", "pw")
    client.login(username="root", password="pw")
    make_env(host, expires_at=timezone.now() + timedelta(hours=1), lifetime=3600)
    for url in ("/admin/fleet/host/", "/admin/fleet/environment/", "/admin/fleet/vm/",
                f"/admin/fleet/host/{host.id}/change/", "/admin/fleet/environment/e/change/"):
        assert client.get(url).status_code == 200, url
    client.post("/admin/fleet/host/", {"action": "drain", "_selected_action": [host.id]})
    assert Host.objects.get().drain
    client.post("/admin/fleet/host/", {"action": "undrain", "_selected_action": [host.id]})
    assert not Host.objects.get().drain
    client.post("/admin/fleet/host/", {"action": "drain", "_selected_action": [host.id]})
    recorded = [(e.actor, e.action, e.target, e.detail) for e in Event.objects.filter(action="host.update")]
    assert recorded == [("operator", "host.update", f"host/{host.id}", {"drain": flag}) for flag in (True, False, True)]
    before = Environment.objects.get().expires_at
    client.post("/admin/fleet/environment/", {"action": "extend_1h", "_selected_action": ["e"]})
    assert Environment.objects.get().expires_at - before >= timedelta(minutes=59)
    client.post("/admin/fleet/environment/", {"action": "destroy", "_selected_action": ["e"]})
    assert Environment.objects.get().state == EnvState.DELETING
    client.post("/admin/fleet/environment/", {"action": "retry_delete", "_selected_action": ["e"]})
    assert Task.objects.filter(action="fleet.env_delete", target="e").count() == 2


@pytest.mark.urls("ttproject.urls.controller")
def test_openapi_schema_builds(client):
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.urls("ttproject.urls.controller")
def test_admin_keeps_a_host_with_live_vms(client, host):
    User.objects.create_superuser("root", "r@x", "pw")
    client.login(username="root", password="pw")
    make_env(host)
    refused = client.post(f"/admin/fleet/host/{host.id}/delete/", {"post": "yes"}, follow=True)
    assert "still has 2 VM(s)" in refused.content.decode() and Host.objects.filter(pk=host.pk).exists()
    bulk = {"action": "delete_selected", "_selected_action": [host.id], "post": "yes"}
    client.post("/admin/fleet/host/", bulk)
    assert Host.objects.filter(pk=host.pk).exists()
    Vm.objects.update(gone=True, state=VmState.DELETED)
    client.post("/admin/fleet/host/", bulk)
    assert not Host.objects.filter(pk=host.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_hanging_agent_does_not_delay_an_expiry():
    """The heartbeat and the retried deletes wait on an agent that never answers; the expiry round, in its
    own thread, still deletes an environment whose deadline passes meanwhile."""
    import threading

    from tests.conftest import wait_for

    from .helpers import local_http_server

    release = threading.Event()

    def hang(method, path):
        release.wait(60)
        return 503, "application/json", b"{}"

    stop = threading.Event()
    with local_http_server(hang) as addr:
        stuck = Host.objects.create(addr=addr, state=HostState.ONLINE, last_seen=timezone.now())
        make_env(stuck, "left-over", state=EnvState.FAILED, n=1)
        Vm.objects.update(doomed=True)  # a delete the agent missed: the loop retries it, and waits
        make_env(stuck, "short", n=0, expires_at=timezone.now() + timedelta(seconds=2), lifetime=2)
        loop_thread = threading.Thread(target=loop.run_forever, kwargs={"stop": stop.is_set}, daemon=True)
        loop_thread.start()
        try:
            wait_for(lambda: Environment.objects.get(pk="short").state == EnvState.DELETING, timeout=15,
                     message="the expiry of 'short'")
            assert Vm.objects.get(pk="left-over-0").gone is False  # still waiting on the agent
        finally:
            stop.set()
            release.set()
            loop_thread.join(10)
            wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("fleet-")], timeout=15,
                     message="the loop's threads to end")

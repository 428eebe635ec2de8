"""The environment state machine (fleet.transitions): the table's rules, exclusive claims, the operation as
the one source of "busy", and a delete superseding a create."""

import pytest

from fleet import lifecycle, transitions
from fleet.choices import EnvState, HostState, VmState
from fleet.jobs import env_create
from fleet.models import Environment, Host, Vm
from ttproject.errors import Conflict
from ttproject.tasks.models import Task, TaskStatus
from ttproject.tasks.runner import TaskContext

from .helpers import agent_info, ssh_key

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def make_env(state: str) -> Environment:
    env = Environment.objects.create(id=f"env-{state}", ssh_keys=[], state=state)
    Vm.objects.create(id=f"{env.id}-0", env=env, image="i", engine="docker", cpu=1, mem=64, disk=64,
                      state=VmState.RUNNING)
    return env


@pytest.mark.parametrize("state", EnvState.values)
def test_each_operation_starts_only_from_its_allowed_states(state):
    for name in ("stop", "start", "delete", "retry_delete"):
        env = make_env(state)
        op = transitions.OPERATIONS[name]
        task = transitions.claim(env, name)
        assert (task is not None) == (state in op.allowed), (name, state)
        env.refresh_from_db()
        if task is None:
            assert env.state == state and env.operation_id is None
        else:
            assert env.state == op.via and env.operation_id == task.id and task.action == op.job
        env.delete()


def test_a_claim_is_won_once():
    env = make_env(EnvState.ACTIVE)
    first = lifecycle.delete_env(env, "test")
    assert first is not None
    assert lifecycle.delete_env(Environment.objects.get(pk=env.pk), "again") is None
    assert Task.objects.filter(target=env.pk).count() == 1
    with pytest.raises(Conflict, match="is deleting; cannot stop"):
        lifecycle.stop_env(Environment.objects.get(pk=env.pk))


def test_busy_while_the_latest_operation_runs():
    env = make_env(EnvState.ACTIVE)
    assert transitions.busy_env_ids() == set()
    task = lifecycle.stop_env(env)
    assert transitions.busy_env_ids() == {env.pk}
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.COMPLETED)
    assert transitions.busy_env_ids() == set()
    # a job ends its operation only from the operation's own state
    assert transitions.finish(env, "stop", EnvState.STOPPED)
    assert not transitions.finish(env, "start", EnvState.ACTIVE)
    assert Environment.objects.get(pk=env.pk).state == EnvState.STOPPED


def test_a_delete_supersedes_a_create_which_then_does_nothing():
    host = Host(addr="127.0.0.1:1", state=HostState.ONLINE)
    host.apply_info(agent_info())
    host.save()
    data = {"id": "e", "ssh_keys": [ssh_key()], "lifetime": 0,
            "vms": [{"image": "t", "engine": "docker", "cpu": 1, "mem": 64, "disk": 64, "ports": [],
                     "deny_outgoing": False}]}
    env, create = lifecycle.create_env(data, "alice")
    assert env.operation_id == create.id and env.state == EnvState.CREATING
    delete = lifecycle.delete_env(env, "test")
    assert delete.params["superseded"] == create.id
    assert transitions.busy_env_ids() == {"e"}
    # the create job, run now, sees it is no longer the environment's operation: it asks no agent
    Task.objects.filter(pk=create.pk).update(status=TaskStatus.RUNNING)
    result = env_create(TaskContext(Task.objects.get(pk=create.pk)))
    assert result == {"env": "e", "skipped": "environment is deleting"}
    assert Vm.objects.get().state == VmState.PENDING
    # the delete job waits for the superseded create to end first
    assert not transitions.wait_for_superseded(delete.params, timeout=0)
    Task.objects.filter(pk=create.pk).update(status=TaskStatus.COMPLETED)
    assert transitions.wait_for_superseded(delete.params, timeout=0)


def test_reconcile_settles_only_settled_environments():
    for state in EnvState.values:
        env = make_env(state)
        moved = transitions.settle(env, [VmState.STOPPED])
        assert moved == (state in transitions.SETTLED), state
        assert Environment.objects.get(pk=env.pk).state == (EnvState.STOPPED if moved else state)

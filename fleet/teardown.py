"""Taking VMs back: destroy one VM on its agent, drop an environment once every VM is confirmed gone.

Used by the delete job, by the create job's rollback and by the fleet loop, which retries what an
unreachable agent missed. A VM row is `doomed` from the moment it must go and `gone` once its agent
confirmed it is not there (a 404 counts), so a crash in between leaves the work to the next try.
"""

from __future__ import annotations

import logging

from .agent_client import AgentClient, AgentError
from .choices import VmState
from .models import Environment, Vm
from .transitions import OPERATIONS

log = logging.getLogger(__name__)


def destroy_vm(vm: Vm, reason: str = "") -> bool:
    """Delete one VM on its agent; True once the agent confirmed it is gone (404 counts)."""
    if vm.gone:
        return True
    vm.write(doomed=True)
    if vm.host is None:
        vm.write(gone=True)
        return True
    try:
        with AgentClient.for_host(vm.host) as agent:
            agent.delete_vm(vm.id)
    except AgentError as exc:
        log.warning("delete of VM %s pending: %s", vm.id, exc)
        return False
    fields = {"gone": True}
    if vm.state != VmState.FAILED:
        fields["state"] = VmState.DELETED
    if reason and not vm.error:
        fields["error"] = reason
    vm.write(**fields)
    return True


def finish_delete(env_id: str) -> bool:
    """Drop the environment's rows once every VM is confirmed gone. True when it is gone."""
    if Vm.objects.filter(env_id=env_id, gone=False).exists():
        return False
    Environment.objects.filter(pk=env_id, state=OPERATIONS["delete"].via).delete()
    return not Environment.objects.filter(pk=env_id).exists()

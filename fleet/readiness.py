"""Ready means ready: a create (or a start) ends `active` only once every VM is usable.

A VM with a published port 22 is usable when its agent reports `ssh.ready` (a banner and host keys seen on
that port, agent/ssh_ready.py); any other VM when all its ports are published. The create and start jobs
poll the agents of the VMs not ready yet every POLL seconds; a VM still not ready after
TTSTACK_SSH_READY_TIMEOUT fails the operation with the tail of its console as the reason (the create job
then rolls the environment back, as for any failed VM). An agent that reports no readiness at all (`ssh`
absent: an older agent) is taken at its word that the VM runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings

from .agent_client import AgentClient, AgentError, parallel
from .choices import VmState
from .models import Vm

log = logging.getLogger(__name__)

POLL = 0.5
CONSOLE_LINES = 30  # of a VM that did not become ready, in the environment's error


def is_ready(vm: Vm) -> bool:
    if vm.state != VmState.RUNNING:
        return False
    if "22" in (vm.port_map or {}):
        return vm.ssh_ready is not False
    return all(str(port) in (vm.port_map or {}) for port in vm.ports)


def _refresh(vm: Vm) -> None:
    """The VM's state as its agent reports it now (a failed call leaves it as it was, for the next poll)."""
    try:
        with AgentClient.for_host(vm.host) as agent:
            data = agent.get_vm(vm.id)
    except AgentError as exc:
        log.info("readiness of %s: %s", vm.id, exc)
        return
    vm.apply_agent(data)
    vm.write(state=vm.state, error=vm.error, **vm.reported())


def console_tail(vm: Vm, lines: int = CONSOLE_LINES) -> str:
    try:
        with AgentClient.for_host(vm.host) as agent:
            return agent.console(vm.id, lines)["text"].rstrip() or "(empty)"
    except AgentError as exc:
        return f"(console not available: {exc})"


def not_ready_reason(vm: Vm, waited: float) -> str:
    if vm.state != VmState.RUNNING:
        return vm.error or f"VM {vm.id} is {vm.state}"
    ssh = (vm.port_map or {}).get("22")
    what = (f"no SSH banner and host key on {vm.publish_addr}:{ssh}" if ssh
            else f"ports {vm.ports} not all published ({vm.port_map})")
    return (f"not ready within {waited:.0f} s (TTSTACK_SSH_READY_TIMEOUT): {what}; "
            f"last console lines:\n{console_tail(vm)}")


def await_ready(vms: list[Vm], still_current: Callable[[], bool], log_line: Callable[[str], None]) -> dict:
    """Wait until every VM is ready; {vm id: reason} of those that were not in time (empty: all ready).
    Returns early (empty) when `still_current()` turns False: another operation took over."""
    started = time.monotonic()
    timeout = float(settings.SSH_READY_TIMEOUT)
    waiting = [vm for vm in vms if not is_ready(vm)]
    if waiting:
        log_line(f"waiting for {len(waiting)} VM(s) to answer SSH / publish their ports")
    while waiting:
        if not still_current():
            return {}
        failed = {vm.id: vm.error or f"VM {vm.id} failed" for vm in waiting if vm.state == VmState.FAILED}
        if failed:
            return failed
        if time.monotonic() - started > timeout:
            reasons = parallel(lambda vm: not_ready_reason(vm, time.monotonic() - started), waiting)
            return {vm.id: reason for vm, reason in zip(waiting, reasons, strict=True)}
        time.sleep(POLL)
        parallel(_refresh, waiting)
        for vm in waiting:
            if is_ready(vm):
                log_line(f"VM {vm.id} ready after {time.monotonic() - started:.1f} s"
                         + (f" (host keys {', '.join(vm.host_key_fingerprints)})" if vm.host_key_fingerprints else ""))
        waiting = [vm for vm in waiting if not is_ready(vm)]
    return {}

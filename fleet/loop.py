"""The controller's periodic work: heartbeat + reconciliation, expiry, retried deletes.

It runs as `manage fleet_loop`, a child process every controller worker (`ttstack controller`,
`ttstack worker controller`) supervises next to its job workers. With several workers (scale-out), a
lease row lets only one loop work at a time; the others wait to take over when its lease lapses. Everything it does is driven by the database, so
a restart resumes where it stopped: expired environments are found by `expires_at`, VMs still to
delete by their `doomed`/`gone` flags.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from . import conf, deadlines, events
from .agent_client import AgentClient, AgentError, parallel
from .choices import EnvState, HostState, VmState
from .hosts import foreign_vms, is_mine
from .models import Environment, Host, Lease, Vm
from .teardown import destroy_vm, finish_delete
from .transitions import busy_env_ids, settle

log = logging.getLogger("fleet.loop")
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
LEASE = "fleet-loop"


def take_lease(ttl: float) -> bool:
    now = timezone.now()
    Lease.objects.get_or_create(name=LEASE)
    return bool(Lease.objects.filter(Q(holder=HOLDER) | Q(until__isnull=True) | Q(until__lt=now), name=LEASE)
                .update(holder=HOLDER, until=now + timedelta(seconds=ttl)))


# ----------------------------------------------------------------------------------- retried deletes


def retry_deletes() -> int:
    """Destroy doomed VMs whose env has no job running (rollbacks and deletes that agents missed)."""
    busy = busy_env_ids()
    vms = [vm for vm in Vm.objects.select_related("host").filter(doomed=True, gone=False,
                                                                 host__state=HostState.ONLINE)
           if vm.env_id not in busy]
    done = parallel(destroy_vm, vms)
    for vm, ok in zip(vms, done, strict=True):
        if ok:
            log.info("VM %s of %s confirmed deleted on %s", vm.id, vm.env_id, vm.host.addr)
    for env_id in (Environment.objects.filter(state=EnvState.DELETING).exclude(pk__in=busy)
                   .values_list("pk", flat=True)):
        if finish_delete(env_id):
            log.info("environment %s deleted", env_id)
    return sum(done)


# ------------------------------------------------------------------------------- heartbeat/reconcile


class Heartbeat:
    def __init__(self):
        # Hosts beat in parallel threads: every access to `orphans` holds `lock`.
        self.orphans: dict[tuple[int, str], float] = {}  # (host, vm id) -> first seen (monotonic)
        self.lock = threading.Lock()

    def beat(self):
        hosts = list(Host.objects.all())
        parallel(self.beat_host, hosts)

    def beat_host(self, host: Host):
        now = timezone.now()  # taken before the agent is asked: rows written since are newer than its answer
        try:
            with AgentClient.for_host(host, timeout=max(2.0, min(conf.AGENT_TIMEOUT, conf.HOST_TIMEOUT / 2))) as a:
                info = a.info()
                agent_vms = a.list_vms()
        except AgentError as exc:
            silent = host.last_seen is None or (now - host.last_seen).total_seconds() > conf.HOST_TIMEOUT
            fields = {"error": str(exc)}
            if silent and host.state != HostState.OFFLINE:
                fields["state"] = HostState.OFFLINE
                log.warning("host %s offline: %s", host.addr, exc)
                events.record("host.state", f"host/{host.pk}", outcome=HostState.OFFLINE, detail={"error": str(exc)})
            Host.objects.filter(pk=host.pk).update(**fields)
            return
        if host.state != HostState.ONLINE:
            log.info("host %s online", host.addr)
            events.record("host.state", f"host/{host.pk}", outcome=HostState.ONLINE)
        host.apply_info(info)
        host.state, host.last_seen, host.error = HostState.ONLINE, now, ""
        host.foreign_vms = foreign_vms(agent_vms)
        host.save(update_fields=["host_id", "hostname", "version", "engines", "engines_unavailable", "storage",
                                 "images", "cpu_total", "mem_total", "disk_total", "cpu_used", "mem_used",
                                 "disk_used", "vm_count", "state", "last_seen", "error", "foreign_vms"])
        self.reconcile(host, agent_vms, since=now)

    def reconcile(self, host: Host, agent_vms: list[dict], since: datetime | None = None):
        """Bring the host's VM rows in line with the agent's list. `since`: when the list was asked for;
        rows written at or after it (a VM created or started meanwhile) are newer than the list and
        left alone (the next heartbeat looks at them again)."""
        on_agent = {str(v.get("id")): v for v in agent_vms if isinstance(v, dict) and v.get("id")}
        busy = busy_env_ids()
        touched = set()
        live = {vm.id: vm for vm in Vm.objects.filter(host=host, gone=False).select_related("env")}
        for vm in live.values():
            if vm.doomed or vm.state in (VmState.PENDING, VmState.CREATING) or vm.env_id in busy:
                continue
            if since is not None and vm.updated_at >= since:
                continue
            # Conditional on the row being unchanged since the list was asked for.
            row = Vm.objects.filter(pk=vm.pk, gone=False)
            if since is not None:
                row = row.filter(updated_at__lt=since)
            seen = on_agent.get(vm.id)
            if seen is None:
                if vm.state in (VmState.RUNNING, VmState.STOPPED) and row.update(
                        state=VmState.FAILED, gone=True, error="the agent no longer has this VM",
                        updated_at=timezone.now()):
                    log.warning("VM %s of %s lost by agent %s: marked failed", vm.id, vm.env_id, host.addr)
                    touched.add(vm.env_id)
                continue
            before = (vm.state, vm.ip, vm.port_map, vm.publish_addr)
            vm.apply_agent(seen)
            if (vm.state, vm.ip, vm.port_map, vm.publish_addr) != before and row.update(
                    state=vm.state, ip=vm.ip, port_map=vm.port_map, publish_addr=vm.publish_addr,
                    error=vm.error, updated_at=timezone.now()):
                touched.add(vm.env_id)
        for env_id in touched:
            states = list(Vm.objects.filter(env_id=env_id).exclude(state=VmState.DELETED)
                          .values_list("state", flat=True))
            env = Environment.objects.filter(pk=env_id).first()
            if env:
                settle(env, states)
        self.collect_orphans(host, {vm_id for vm_id in set(on_agent) - set(live) if is_mine(on_agent[vm_id])})

    def collect_orphans(self, host: Host, unknown: set[str]):
        """VMs this controller made on the agent that no live VM row owns: destroyed after the grace period,
        logged. (VMs of other controllers or made on the agent directly are only reported: foreign_vms.)"""
        now = time.monotonic()
        with self.lock:
            for key in [k for k in self.orphans if k[0] == host.id and k[1] not in unknown]:
                del self.orphans[key]
            due = {}
            for vm_id in unknown:
                first = self.orphans.setdefault((host.id, vm_id), now)
                if now - first >= conf.ORPHAN_GRACE:
                    due[vm_id] = first
        for vm_id, first in due.items():  # agents are called without holding the lock
            try:
                with AgentClient.for_host(host) as agent:
                    agent.delete_vm(vm_id)
                log.warning("destroyed VM %s on %s: no environment owns it (seen for %.0f s)",
                            vm_id, host.addr, now - first)
                with self.lock:
                    self.orphans.pop((host.id, vm_id), None)
            except AgentError as exc:
                log.warning("could not destroy orphan VM %s on %s: %s", vm_id, host.addr, exc)


def _repeat(name: str, period: float, work, stop):
    """work() every `period` seconds until stop(); a failed round is logged and the next one runs
    (the loop must outlive a bad round: database briefly locked, agent bug...)."""
    while not stop():
        started = time.monotonic()
        try:
            close_old_connections()
            work()
        except Exception:
            log.exception("fleet loop: %s round failed", name)
        time.sleep(max(0.05, period - (time.monotonic() - started)))
    connections.close_all()  # this thread's


def run_forever(stop=lambda: False):
    """Three rounds, each in its own thread so none waits for another: expiry (every tick; the database
    only, no agent call), retried deletes (every tick) and the heartbeat (every TTSTACK_HEARTBEAT s),
    both of which call agents. So a slow agent never delays an expiry, nor the lease's renewal, which
    the expiry round does: all three work only while this process holds the lease."""
    holding = threading.Event()
    lease_ttl = max(15.0, conf.HOST_TIMEOUT)
    log.info("fleet loop started (%s): heartbeat %.1f s, host timeout %.1f s, tick %.1f s",
             HOLDER, conf.HEARTBEAT, conf.HOST_TIMEOUT, conf.TICK)

    def expiry():
        if take_lease(lease_ttl):
            holding.set()
            deadlines.enforce()  # warnings, on_expiry stop, expiry deletes (lifecycle.expire_envs)
            events.prune_now_and_then()
        else:
            holding.clear()

    def while_holding(work):
        return lambda: work() if holding.is_set() else None

    for name, period, work in (("heartbeat", conf.HEARTBEAT, Heartbeat().beat), ("retried deletes", conf.TICK,
                                                                              retry_deletes)):
        threading.Thread(target=_repeat, args=(name, period, while_holding(work), stop),
                         name=f"fleet-{name.replace(' ', '-')}", daemon=True).start()
    _repeat("expiry", conf.TICK, expiry, stop)

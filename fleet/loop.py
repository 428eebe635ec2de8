"""The controller's periodic work: heartbeat + reconciliation, expiry, retried deletes.

It runs as `manage fleet_loop`, a child process every controller worker (`ttstack controller`,
`ttstack worker controller`) supervises next to its job workers. With several workers (scale-out), a
lease row lets only one loop work at a time; the others wait to take over when its lease lapses, and a loop
that lost it stops before its next write (LeaseKeeper). Everything it does is driven by the database, so
a restart resumes where it stopped: expired environments are found by `expires_at`, VMs still to
delete by their `doomed`/`gone` flags.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
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


class LeaseKeeper:
    """The loop's lease, renewed every tick by a thread of its own (database only, no agent call), and the
    fence every round checks before it writes: `held()` is True only while the last successful renewal is
    younger than ttl minus a third of it. Another loop can take the lease only once `until` (ttl after that
    renewal) has passed, so a loop whose renewals stop (database unreachable, process paused, lease taken)
    stops acting before the next holder starts; the margin absorbs clock skew between the machines."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._renewed: float | None = None  # monotonic time the last successful renewal started

    def renew(self):
        started = time.monotonic()
        self._renewed = started if take_lease(self.ttl) else None

    def held(self) -> bool:
        renewed = self._renewed
        return renewed is not None and time.monotonic() - renewed < self.ttl * 2 / 3


def _always() -> bool:
    return True


# ----------------------------------------------------------------------------------- retried deletes


def retry_deletes(fence=_always) -> int:
    """Destroy doomed VMs whose env has no job running (rollbacks and deletes that agents missed); each
    agent call and each drop of an environment only while `fence()` (the lease) holds."""
    busy = busy_env_ids()
    vms = [vm for vm in Vm.objects.select_related("host").filter(doomed=True, gone=False,
                                                                 host__state=HostState.ONLINE)
           if vm.env_id not in busy]
    done = parallel(lambda vm: fence() and destroy_vm(vm), vms)
    for vm, ok in zip(vms, done, strict=True):
        if ok:
            log.info("VM %s of %s confirmed deleted on %s", vm.id, vm.env_id, vm.host.addr)
    for env_id in (Environment.objects.filter(state=EnvState.DELETING).exclude(pk__in=busy)
                   .values_list("pk", flat=True)):
        if fence() and finish_delete(env_id):
            log.info("environment %s deleted", env_id)
    return sum(done)


# ------------------------------------------------------------------------------- heartbeat/reconcile


def mark_silent_hosts_offline(host_ids) -> list[str]:
    """Of `host_ids` (hosts whose call hangs, asked by this loop for at least TTSTACK_HOST_TIMEOUT), those not heard from
    for TTSTACK_HOST_TIMEOUT go offline now, whether or not a beat of theirs is still waiting for its answer
    (database only: a cut host is offline on time, however long its calls hang)."""
    cutoff = timezone.now() - timedelta(seconds=conf.HOST_TIMEOUT)
    marked = []
    for host in Host.objects.filter(Q(last_seen__lt=cutoff) | Q(last_seen__isnull=True), state=HostState.ONLINE,
                                    pk__in=list(host_ids)):
        if Host.objects.filter(pk=host.pk, state=HostState.ONLINE, last_seen=host.last_seen).update(
                state=HostState.OFFLINE, error=host.error or f"no answer for {conf.HOST_TIMEOUT:g} s"):
            log.warning("host %s offline: silent for %g s", host.addr, conf.HOST_TIMEOUT)
            marked.append(host.addr)
    return marked


class Heartbeat:
    """Polls every host, each in a thread of a bounded pool (TTSTACK_AGENT_PARALLEL) with a short timeout. A
    round starts a beat for each host whose previous beat has ended and does not wait for them: a slow or cut
    host delays nobody else's beat, and its own next beat starts once its call gave up."""

    def __init__(self, fence=_always):
        # Hosts beat in parallel threads: every access to `orphans` holds `lock`.
        self.orphans: dict[tuple[int, str], float] = {}  # (host, vm id) -> first seen (monotonic)
        self.lock = threading.Lock()
        self.fence = fence  # checked before every write: False once this loop's lease may have lapsed
        self.pool = ThreadPoolExecutor(max_workers=conf.AGENT_PARALLEL, thread_name_prefix="fleet-beat")
        self.in_flight: dict[int, Future] = {}  # host pk -> its beat under way (or the last one)
        self.due: dict[int, float] = {}  # host pk -> when its next beat may start (monotonic)
        # host pk -> when this loop first asked it: a loop that just started (or took the lease over) asks a
        # host for TTSTACK_HOST_TIMEOUT before it calls it silent, whatever age its last_seen has.
        self.asked_since: dict[int, float] = {}

    def beat(self, wait: bool = False):
        """One round: a beat starts for each host whose previous beat has ended and whose next is due
        (TTSTACK_HEARTBEAT after the previous one started). The loop runs rounds more often than that, so
        a host is polled every heartbeat however long the others take. `wait`: beat every host now and
        return once those beats have ended (the bench, tests)."""
        started, now = [], time.monotonic()
        if self.fence():
            # hosts whose call hangs now (a failed call marks its host itself, in beat_host)
            hanging = [pk for pk, beat in self.in_flight.items() if not beat.done()]
            mark_silent_hosts_offline(pk for pk in hanging if now - self.asked_since[pk] >= conf.HOST_TIMEOUT)
        hosts = list(Host.objects.exclude(state=HostState.DETACHED))
        for host in hosts:
            previous = self.in_flight.get(host.pk)
            if (previous is None or previous.done()) and (wait or now >= self.due.get(host.pk, 0.0)):
                self.due[host.pk] = now + conf.HEARTBEAT
                self.asked_since.setdefault(host.pk, now)
                self.in_flight[host.pk] = beat = self.pool.submit(self._beat_closing, host)
                started.append(beat)
        for gone in set(self.in_flight) - {host.pk for host in hosts}:
            del self.in_flight[gone]
            self.due.pop(gone, None)
            self.asked_since.pop(gone, None)
        if wait:
            futures_wait(started)

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _beat_closing(self, host: Host):
        try:
            self.beat_host(host)
        except Exception:
            log.exception("heartbeat of %s failed", host.addr)
        finally:
            connections.close_all()  # this thread's: a pool thread waiting on an agent holds none

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
            if self.fence():
                Host.objects.filter(pk=host.pk).exclude(state=HostState.DETACHED).update(**fields)
            return
        if not self.fence() or not Host.objects.filter(pk=host.pk).exclude(state=HostState.DETACHED).exists():
            return  # the lease may be another loop's now, or the host was detached or removed meanwhile
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
                    events.vm_state(vm, VmState.FAILED, vm.env.owner)
                    touched.add(vm.env_id)
                continue
            before = (vm.state, vm.reported())
            vm.apply_agent(seen)
            if (vm.state, vm.reported()) != before and row.update(
                    state=vm.state, error=vm.error, updated_at=timezone.now(), **vm.reported()):
                if vm.state != before[0]:  # seen by the heartbeat: stopped or failed outside ttstack
                    events.vm_state(vm, vm.state, vm.env.owner)
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
            if not self.fence():
                return
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
    """Four rounds, each in its own thread so none waits for another: the lease (every tick, database only),
    expiry (every tick; database only), retried deletes (every tick) and the heartbeat (each host every
    TTSTACK_HEARTBEAT s, in its pool), both of which call agents. So a slow agent never delays an expiry, nor the
    lease's renewal; the three rounds act only while the lease holds (LeaseKeeper.held)."""
    keeper = LeaseKeeper(max(15.0, conf.HOST_TIMEOUT))
    heartbeat = Heartbeat(fence=keeper.held)
    log.info("fleet loop started (%s): heartbeat %.1f s, host timeout %.1f s, tick %.1f s",
             HOLDER, conf.HEARTBEAT, conf.HOST_TIMEOUT, conf.TICK)

    def expiry():
        deadlines.enforce()  # warnings, on_expiry stop, expiry deletes (lifecycle.expire_envs)
        events.prune_now_and_then()

    def while_holding(work):
        return lambda: work() if keeper.held() else None

    for name, period, work in (("lease", conf.TICK, keeper.renew),
                               ("heartbeat", min(conf.HEARTBEAT, 0.25), while_holding(heartbeat.beat)),
                               ("retried deletes", conf.TICK, while_holding(lambda: retry_deletes(keeper.held)))):
        threading.Thread(target=_repeat, args=(name, period, work, stop),
                         name=f"fleet-{name.replace(' ', '-')}", daemon=True).start()
    try:
        _repeat("expiry", conf.TICK, while_holding(expiry), stop)
    finally:
        heartbeat.close()

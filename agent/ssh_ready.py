"""Ready means ready: a VM with guest port 22 is `ssh.ready` once its published port sends an SSH banner and
`ssh-keyscan` gets a host key from it.

A connect alone proves nothing (ttproject.sshkeys.sends_banner says why): the check reads the banner
("SSH-2.0-..."), then scans the key types in turn; the first key found makes the VM ready, and the other
types' keys are scanned and added just after. Their SHA256 fingerprints (as `ssh-keygen -l` prints them)
are kept on the record for the client to pin.

One daemon thread per VM, started after a create or a start (and again by `ensure_watching` when a listed VM
is running, not ready and unwatched: after a restart of the agent). It checks every CHECK_INTERVAL seconds
until the VM is ready, is no longer running, or TTSTACK_SSH_READY_TIMEOUT has passed (the controller then
fails the environment with the console's tail).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connections
from django.utils import timezone

from agent.models import Vm, VmState
from ttproject.sshkeys import KEY_TYPES, UNSPECIFIED_ADDRS, fingerprint, keyscan, keyscan_keys, sends_banner

log = logging.getLogger(__name__)

SSH_PORT = "22"
CHECK_INTERVAL = 0.5
KEYSCAN_TIMEOUT = 10

_watching: set[str] = set()
_gave_up: set[str] = set()  # timed out: watched again only after a start (not by every listing)
_guard = threading.Lock()


def connect_addr(publish_addr: str) -> str:
    """Where the agent itself reaches a published port."""
    return "127.0.0.1" if publish_addr in UNSPECIFIED_ADDRS else publish_addr


def endpoint(vm: Vm) -> tuple[str, int] | None:
    """(address, port) of the VM's published SSH port, None when it has none."""
    port = (vm.port_map or {}).get(SSH_PORT)
    return (connect_addr(vm.publish_addr), int(port)) if port else None


def host_key_fingerprints(host: str, port: int, kinds: tuple[str, ...] = KEY_TYPES) -> list[str]:
    """Fingerprints of the host keys of `kinds` offered on host:port (empty when none came)."""
    try:
        scan = keyscan(host, port, KEYSCAN_TIMEOUT, kinds)
    except OSError as exc:
        log.info("ssh-keyscan %s:%s: %s", host, port, exc)
        return []
    return sorted({fingerprint(blob) for _kind, blob in keyscan_keys(scan.output)})


def check_once(vm: Vm) -> tuple[list[str], tuple[str, ...]]:
    """(fingerprints, key types not scanned yet) when the VM answers SSH now, else ([], ()). The first type
    that yields a key makes it ready: each scan is a key exchange, about 0.7 s apiece in a TCG guest, and
    the client pins whichever keys are listed when it connects."""
    where = endpoint(vm)
    if where is None or not sends_banner(*where):
        return [], ()
    for i, kind in enumerate(KEY_TYPES):
        prints = host_key_fingerprints(*where, (kind,))
        if prints:
            return prints, KEY_TYPES[i + 1:]
    return [], ()


def _add_other_keys(vm: Vm, prints: list[str], kinds: tuple[str, ...]) -> None:
    """The fingerprints of the remaining key types added to a ready VM's."""
    more = host_key_fingerprints(*endpoint(vm), kinds) if kinds else []
    if more:
        Vm.objects.filter(pk=vm.pk, ssh_ready=True).update(host_key_fingerprints=sorted(set(prints) | set(more)))


def not_ready(vm: Vm) -> None:
    """Forget readiness (a stop, a start): the guest must show it again. Fingerprints stay as last seen.
    A VM whose port 22 is not watched (ssh_ready None) stays so."""
    Vm.objects.filter(pk=vm.pk, ssh_ready__isnull=False).update(ssh_ready=False, ssh_ready_at=None)
    if vm.ssh_ready is not None:
        vm.ssh_ready, vm.ssh_ready_at = False, None


def watch(vm: Vm, *, fresh: bool = True) -> bool:
    """Start the watcher of a running VM with port 22 (once per VM at a time); True when one was started.
    `fresh`: the guest was just created or started (a VM whose watcher gave up is watched again)."""
    if vm.state != VmState.RUNNING or vm.ssh_ready is not False or endpoint(vm) is None:
        return False
    with _guard:
        if vm.id in _watching or (not fresh and vm.id in _gave_up):
            return False
        _watching.add(vm.id)
        _gave_up.discard(vm.id)
    threading.Thread(target=_run, args=(vm.id,), name=f"ssh-ready-{vm.id}", daemon=True).start()
    return True


def ensure_watching(vms) -> None:
    """A watcher for every running, not ready VM (after an agent restart nobody watches them)."""
    for vm in vms:
        watch(vm, fresh=False)


def _run(vm_id: str) -> None:
    deadline = time.monotonic() + float(settings.SSH_READY_TIMEOUT)
    try:
        while time.monotonic() < deadline:
            vm = Vm.objects.filter(pk=vm_id, state=VmState.RUNNING).first()
            if vm is None or vm.ssh_ready:
                return
            prints, rest = check_once(vm)
            if prints:
                # conditional: a stop meanwhile leaves the record not ready
                Vm.objects.filter(pk=vm_id, state=VmState.RUNNING).update(
                    ssh_ready=True, ssh_ready_at=timezone.now(), host_key_fingerprints=prints)
                log.info("VM %s answers SSH (%s)", vm_id, ", ".join(prints))
                _add_other_keys(vm, prints, rest)
                return
            time.sleep(CHECK_INTERVAL)
        log.warning("VM %s sent no SSH banner within %s s", vm_id, settings.SSH_READY_TIMEOUT)
        with _guard:
            _gave_up.add(vm_id)
    except Exception:
        log.exception("readiness watcher of %s failed", vm_id)
    finally:
        with _guard:
            _watching.discard(vm_id)
        connections.close_all()

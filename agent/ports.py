"""Host ports for guests: from TTSTACK_PORT_RANGE, probed by binding before use, never given twice.

Uniqueness is the database's job (PortAllocation.host_port is unique); the bind probe keeps away from
ports something else on the host already uses. Candidates are tried from a random point of the range so
two agents on one machine (each with its own database) rarely reach for the same port at once.

Ports of the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default) come last:
the probe cannot see the future, and any outgoing connection made between the probe and the engine's bind
may be given the same port, failing the guest's start with "address already in use". Either race
(another agent's guest, an outgoing connection) can still happen: agent/lifecycle.py then gives the VM
new ports and starts it again (`reallocate`).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

from django.db import IntegrityError, transaction

from agent import conf
from agent.models import PortAllocation, Vm
from ttproject import errors


class NoFreePort(errors.Refused):
    """Every host port of the range is taken."""


def port_is_free(port: int, addr: str) -> bool:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((addr, port))
        except OSError:
            return False
    if addr not in ("0.0.0.0", "::"):
        # something on the wildcard address would take the connections too
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> range:
    """The ports the kernel gives outgoing connections (empty where it does not say)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return range(0)
    return range(low, high + 1)


def _rotated(ports: list[range]) -> Iterator[int]:
    """Every port of `ports` once, from a random one onwards (wrapping around)."""
    total = sum(len(r) for r in ports)
    if not total:
        return
    skip = random.randrange(total)  # noqa: S311 - not security relevant
    for step in range(total):
        index = (skip + step) % total
        for part in ports:
            if index < len(part):
                yield part[index]
                break
            index -= len(part)


def candidates(low: int, high: int) -> Iterator[int]:
    """The range's ports in the order they are tried: the ones outside the ephemeral range from a random
    one of them, then the ephemeral ones from a random one (each part uniformly, so that two agents of one
    machine rarely start at the same port)."""
    ephemeral = ephemeral_range()
    inner = range(max(low, ephemeral.start), min(high, ephemeral.stop - 1) + 1) if ephemeral else range(0)
    if not inner:
        yield from _rotated([range(low, high + 1)])
        return
    yield from _rotated([range(low, inner.start), range(inner.stop, high + 1)])
    yield from _rotated([inner])


def allocate(vm: Vm, guest_ports: list[int], addr: str) -> dict[int, int]:
    """Give each guest port a host port; rows are written in the caller's transaction."""
    low, high = conf.port_range()
    taken = set(PortAllocation.objects.values_list("host_port", flat=True))
    tries = candidates(low, high)
    result: dict[int, int] = {}
    for guest in guest_ports:
        while True:
            port = next(tries, None)
            if port is None:
                raise NoFreePort(f"no free host port left in {low}-{high}")
            if port in taken or not port_is_free(port, addr):
                continue
            try:
                with transaction.atomic():
                    PortAllocation.objects.create(vm=vm, host_port=port, guest_port=guest)
            except IntegrityError:
                taken.add(port)
                continue
            taken.add(port)
            result[guest] = port
            break
    return result


TAKEN_MESSAGES = ("port is already allocated", "address already in use")  # docker's words for the two races


def taken_meanwhile(error: Exception) -> bool:
    """Whether a guest failed to start because one of its host ports was taken after the probe."""
    return any(text in str(error).lower() for text in TAKEN_MESSAGES)


def reallocate(vm: Vm) -> dict[str, int]:
    """New host ports for the VM's guest ports (the old ones released first: the probe skips a port that
    is now really in use); saved in vm.port_map."""
    with transaction.atomic():
        release(vm.id)
        vm.port_map = {str(g): h for g, h in sorted(allocate(vm, list(vm.ports), vm.publish_addr).items())}
        vm.save(update_fields=["port_map", "updated_at"])
    return vm.port_map


def release(vm_id: str) -> None:
    PortAllocation.objects.filter(vm_id=vm_id).delete()

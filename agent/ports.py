"""Host ports for guests: from TTSTACK_PORT_RANGE, probed by binding before use, never given twice.

Uniqueness is the database's job (PortAllocation.host_port is unique); the bind probe keeps away from
ports something else on the host already uses. Candidates are tried from a random point of the range so
two agents on one machine (each with its own database) rarely reach for the same port at once.
"""

from __future__ import annotations

import random
import socket

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


def allocate(vm: Vm, guest_ports: list[int], addr: str) -> dict[int, int]:
    """Give each guest port a host port; rows are written in the caller's transaction."""
    low, high = conf.port_range()
    taken = set(PortAllocation.objects.values_list("host_port", flat=True))
    span = high - low + 1
    start = random.randrange(span)  # noqa: S311 - not security relevant
    result: dict[int, int] = {}
    offset = 0
    for guest in guest_ports:
        while True:
            if offset >= span:
                raise NoFreePort(f"no free host port left in {low}-{high}")
            port = low + (start + offset) % span
            offset += 1
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


def release(vm_id: str) -> None:
    PortAllocation.objects.filter(vm_id=vm_id).delete()

"""This host's resources: its totals, what the agent's VMs reserve, and the capacity check of a create.

Running and creating VMs hold their cpu and mem; every VM that still has its guest (stopped ones too) holds
its disk; failed VMs hold nothing.
"""

from __future__ import annotations

import os
import shutil

from agent import conf
from agent.models import Vm, VmState
from ttproject import errors

MIB = 1024 * 1024


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def host_totals() -> dict:
    root = conf.vms_dir()
    root.mkdir(parents=True, exist_ok=True)
    return {
        "cpu_total": os.cpu_count() or 1,
        "mem_total": _mem_total_mib(),
        "disk_total": shutil.disk_usage(root).total // MIB,
    }


def resources() -> dict:
    """Totals of the host and what this agent's VMs reserve (MiB for mem and disk)."""
    cpu_used = mem_used = disk_used = 0
    for vm in Vm.objects.exclude(state__in=[VmState.FAILED]).only("cpu", "mem", "disk", "state"):
        disk_used += vm.disk
        if vm.state in (VmState.CREATING, VmState.RUNNING):
            cpu_used += vm.cpu
            mem_used += vm.mem
    return {**host_totals(), "cpu_used": cpu_used, "mem_used": mem_used, "disk_used": disk_used}


def check_capacity(cpu: int, mem: int, disk: int) -> None:
    """Refuse one VM bigger than the whole host (the controller places VMs by what is free)."""
    total = host_totals()
    for field, value, limit, unit in (("cpu", cpu, total["cpu_total"], "CPUs"),
                                      ("mem", mem, total["mem_total"], "MiB of memory"),
                                      ("disk", disk, total["disk_total"], "MiB of disk")):
        if value > limit:
            raise errors.Refused(f"{field} {value} is more than this host has ({limit} {unit})")

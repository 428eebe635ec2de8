"""What the client reads from a VM object: its short name, where its SSH is, whether it is ready.

Controllers that report `ssh: {host, port, user, host_key_fingerprints, ready, ready_at}` are taken at their
word; for the others SSH is `port_map["22"]` on the VM's publish address (else its agent's host), user root,
and readiness is unknown (None).
"""

from __future__ import annotations

from dataclasses import dataclass

from ttproject.sshkeys import connect_host

FINAL_VM_STATES = ("running", "stopped", "failed", "deleted")


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int | None
    user: str
    ready: bool | None
    fingerprints: tuple[str, ...] = ()


def vm_name(env_id: str, vm: dict) -> str:
    return f"{env_id}/{vm.get('index', '?')}"



def ssh_endpoint(vm: dict) -> SshEndpoint:
    ssh = vm.get("ssh") if isinstance(vm.get("ssh"), dict) else {}
    host = ssh.get("host") or connect_host(vm.get("publish_addr") or "", vm.get("host_addr"))
    port = ssh.get("port") or (vm.get("port_map") or {}).get("22")
    return SshEndpoint(host=host or "", port=int(port) if port else None, user=ssh.get("user") or "root",
                       ready=ssh.get("ready") if "ready" in ssh else None,
                       fingerprints=tuple(ssh.get("host_key_fingerprints") or ()))


def readiness(vm: dict) -> str:
    """'ready' / 'waiting' for SSH as the controller reports it, 'no ssh' for VMs without port 22."""
    endpoint = ssh_endpoint(vm)
    if endpoint.port is None and 22 not in (vm.get("ports") or []):
        return "no ssh"
    if endpoint.ready is None:
        return "-"
    return "ready" if endpoint.ready else "waiting"


def ssh_text(vm: dict) -> str:
    endpoint = ssh_endpoint(vm)
    return f"{endpoint.host}:{endpoint.port}" if endpoint.port else "-"


def other_ports(vm: dict) -> str:
    ports = {k: v for k, v in (vm.get("port_map") or {}).items() if k != "22"}
    return " ".join(f"{guest}->{host}" for guest, host in sorted(ports.items(), key=lambda kv: int(kv[0])))


def vm_row(env_id: str, vm: dict) -> list:
    return [vm_name(env_id, vm), vm.get("state"), vm.get("engine"), vm.get("image"), vm.get("host_addr"),
            ssh_text(vm), readiness(vm), other_ports(vm), vm.get("error")]


VM_COLUMNS = ("VM", "STATE", "ENGINE", "IMAGE", "HOST", "SSH", "READY", "PORTS", "ERROR")


def pick_vm(env: dict, ref: str | None) -> dict:
    """The VM `ref` names (its index, its id or its hostname); the only VM when `ref` is None."""
    vms = env.get("vms") or []
    if ref is None:
        if len(vms) == 1:
            return vms[0]
        raise LookupError(f"environment {env['id']} has {len(vms)} VMs: name one as {env['id']}/INDEX "
                          f"({', '.join(str(v.get('index')) for v in vms)})")
    for vm in vms:
        if ref in (str(vm.get("index")), vm.get("id"), vm.get("hostname")):
            return vm
    raise LookupError(f"environment {env['id']} has no VM {ref!r}")

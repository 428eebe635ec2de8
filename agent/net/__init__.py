"""Environment networks on this host (docs/networks.md): made before the first VM that names one, gone with
the last, and swept by reconcile after a crash.

A VM record's `network` (the env's id, passed by the controller) is the key: the docker VMs with the same
network share one docker bridge network, the qemu VMs one Linux bridge with its name server. This module is
what lifecycle and reconcile call; the engine-specific parts are docker_net.py and qemu_net.py.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path

from agent import conf
from agent.engines.base import EngineError
from agent.net import docker_net, firewall, hostnet, names, qemu_net
from ttproject import errors
from ttproject.vocabulary import ENGINES_WITH_NETWORKS

log = logging.getLogger(__name__)

FIRST_GUEST = 10  # .1 is the bridge (gateway / name server); .2-.9 left free
# One change to the host's networks at a time in this process (two creates in one new env make it once).
_lock = threading.RLock()
# Networks made whole by this process and not removed since: the env's further VMs skip the checks (a docker
# lookup and six iptables calls under _lock, which four creates at once waited for in turn). Reconcile's sweep
# checks again; a failed create forgets its network, so the next create checks too.
_made: set[tuple] = set()


def _key(network: str, engine: str) -> tuple:
    return (str(conf.data_dir()), conf.host_id(), network, engine)  # one process may serve several (tests)


def state_root() -> Path:
    return conf.data_dir() / "networks"


def check_engine(network: str, engine: str) -> None:
    if network and engine not in ENGINES_WITH_NETWORKS:
        raise errors.Refused(f"environment networks are provided for {' and '.join(ENGINES_WITH_NETWORKS)} "
                             f"guests, not for {engine}")


def _docker_client():
    from agent import engines as registry

    return registry.get("docker").client()


def _qemu(network: str) -> qemu_net.QemuNetwork:
    return qemu_net.QemuNetwork(conf.host_id(), network, state_root())


def _taken() -> list[ipaddress.IPv4Network]:
    """Subnets a new network must not overlap: routes, docker's networks, qemu networks made before."""
    taken = hostnet.routed_networks()
    try:
        taken += docker_net.network_subnets(_docker_client())
    except Exception as exc:  # no docker here: its networks cannot clash
        log.debug("docker subnets: %s", exc)
    for network in qemu_net.state_networks(conf.host_id(), state_root()):
        subnet = _qemu(network).subnet()
        if subnet:
            taken.append(subnet)
    return taken


# --------------------------------------------------------------------------------------------- making


def ensure(network: str, engine: str, *, check: bool = False) -> None:
    """The network's host objects for `engine`, each made when missing (idempotent). Without `check`, a
    network this process made already is taken as it is."""
    if not network or (not check and _key(network, engine) in _made):
        return
    with _lock:
        if not check and _key(network, engine) in _made:
            return
        if engine == "docker":
            _ensure_docker(network)
        elif engine == "qemu":
            _qemu(network).ensure(_taken())
        _made.add(_key(network, engine))


def forget(network: str, engine: str) -> None:
    """The next `ensure` of the network checks its host objects again (after a create that failed)."""
    _made.discard(_key(network, engine))


def _ensure_docker(network: str) -> None:
    import docker

    client, host_id = _docker_client(), conf.host_id()
    try:
        net = docker_net.find_network(client, host_id, network)
        for _attempt in range(3):  # another agent may take the same free subnet at the same moment
            if net is not None:
                break
            try:
                net = docker_net.create_network(client, host_id, network, hostnet.pick_subnet(_taken()))
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc).lower():
                    raise
        if net is None:
            raise EngineError(f"docker could not create network {network}: every subnet tried overlapped")
    except docker.errors.DockerException as exc:
        raise EngineError(f"docker could not create network {network}: {exc}") from exc
    bridge = names.bridge(host_id, "docker", network)
    firewall.install(bridge, names.chain(host_id, bridge), forward=False, ports=conf.port_range())


def assign_address(vm) -> str:
    """The qemu VM's address on its network (kept in `vm.ip`), the lowest free one, and its name published."""
    with _lock:
        subnet = _qemu(vm.network).subnet()
        if subnet is None:
            raise EngineError(f"network {vm.network} has no subnet (was it made?)")
        if not vm.ip or ipaddress.ip_address(vm.ip) not in subnet:
            used = set(_members(vm.network, "qemu").exclude(pk=vm.pk).values_list("ip", flat=True))
            hosts = list(subnet.hosts())[FIRST_GUEST - 1:]
            free = next((str(a) for a in hosts if str(a) not in used), None)
            if free is None:
                raise errors.Refused(f"network {vm.network} has no free address left in {subnet}")
            vm.ip = free
            vm.save(update_fields=["ip", "updated_at"])
        publish_names(vm.network)
        return vm.ip


def seed_network_config(vm, nat_mac: str, env_mac: str) -> dict | None:
    """cloud-init network config v2 for a qemu VM on a network: DHCP on the user-mode NIC (its way out and
    its published ports), the env address and name server on the second NIC."""
    if not vm.network or vm.engine != "qemu":
        return None
    subnet = _qemu(vm.network).subnet()
    return {"version": 2, "ethernets": {
        "nat": {"match": {"macaddress": nat_mac}, "dhcp4": True},
        "env": {"match": {"macaddress": env_mac}, "addresses": [f"{vm.ip}/{subnet.prefixlen}"],
                "nameservers": {"addresses": [hostnet.gateway(subnet)]}},
    }}


def _members(network: str, engine: str):
    """The records that keep a network alive: every VM of it but the failed ones whose guest is gone."""
    from agent.guest_state import GUEST_DISAPPEARED
    from agent.models import Vm, VmState

    gone = Vm.objects.filter(state=VmState.FAILED).exclude(error=GUEST_DISAPPEARED)
    return Vm.objects.filter(network=network, engine=engine).exclude(pk__in=gone.values("pk"))


def publish_names(network: str) -> None:
    """The qemu network's name server answers the hostnames of its members."""
    members = _members(network, "qemu").exclude(ip="")
    _qemu(network).write_hosts({vm.hostname.lower(): vm.ip for vm in members})


# ------------------------------------------------------------------------------------------- removing


def release(vm) -> None:
    """After a VM's guest is gone: its name unpublished, and the network removed when it was the last."""
    if not vm.network or vm.engine not in ENGINES_WITH_NETWORKS:
        return
    with _lock:
        if _members(vm.network, vm.engine).exclude(pk=vm.pk).exists():
            if vm.engine == "qemu":
                publish_names(vm.network)
            return
        remove(vm.network, vm.engine)


def remove(network: str, engine: str) -> None:
    forget(network, engine)
    host_id = conf.host_id()
    if engine == "qemu":
        _qemu(network).remove()
        return
    import docker

    client = _docker_client()
    net = docker_net.find_network(client, host_id, network)
    if net is not None:
        try:
            client.api.remove_network(net["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not remove network {network}: {exc}") from exc
    firewall.remove(names.chain(host_id, names.bridge(host_id, "docker", network)))
    log.info("network %s (%s) removed", network, engine)


def sweep(engine: str) -> dict:
    """Reconcile: this agent's networks of `engine` that no record needs are removed (bridge, chain, name
    server, docker network, holders); the ones in use are made whole again (after a reboot, say)."""
    from agent.models import Vm

    host_id = conf.host_id()
    wanted = set(Vm.objects.filter(engine=engine).exclude(network="").values_list("network", flat=True))
    wanted = {n for n in wanted if _members(n, engine).exists()}
    if engine == "qemu":
        present = set(qemu_net.existing(host_id)) | qemu_net.state_networks(host_id, state_root())
    else:
        client = _docker_client()
        docker_net.remove_stray_holders(client, host_id, set(Vm.objects.filter(engine="docker")
                                                             .values_list("id", flat=True)))
        present = set(docker_net.our_networks(client, host_id))
    removed = sorted(present - wanted)
    for network in removed:
        log.warning("reconcile: removing network %s (%s): no VM uses it", network, engine)
        remove(network, engine)
    _remove_unknown_chains(host_id)
    for network in sorted(wanted):
        ensure(network, engine, check=True)
        if engine == "qemu":
            publish_names(network)
    return {"removed": removed, "kept": sorted(wanted)}


def _remove_unknown_chains(host_id: str) -> None:
    """Chains of this agent whose bridge is gone (a crash between removing the bridge and the chain)."""
    prefix = names.chain_prefix(host_id)
    for chain in firewall.chains(prefix):
        bridge = chain[len(prefix):].rstrip("o")  # bridge names end in hex digits; OUTPUT chains in "o"
        if not hostnet.link_exists(bridge):
            firewall.remove(prefix + bridge)

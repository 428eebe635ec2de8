"""The docker side of environment networks and of deny_outgoing.

- An environment network is a user-defined bridge network `tt-<host id[:8]>-<network>` with a subnet from
  TTSTACK_NETWORK_POOL, its Linux bridge named `ttd<key>` (so the host firewall chain can name it before any
  container exists) and the labels ttstack.host_id / ttstack.network. Docker's embedded DNS resolves the
  env's hostnames (network aliases); docker's own isolation rules keep the env's bridge apart from every other
  docker network; the chain of agent/net/firewall.py keeps its containers off the host's own services.
- deny_outgoing: the rules go into a network namespace before the guest's first instruction. Docker makes a
  container's namespace only when it starts it, so each such VM has a *network holder*: a container of the
  image `ttstack/netns-holder` (a static busybox sleeping) that owns the namespace, the hostname, the
  published ports and the env network endpoint. The agent starts it, loads the rules into its namespace with
  one `iptables-restore` (atomic), and only then starts the VM's container with `--network container:<holder>`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import time

from agent.engines.base import EngineError
from agent.net import names

HOLDER_IMAGE = "ttstack/netns-holder:1"
HOLDER_LABEL_HOST = "ttstack.netns.host_id"  # not ttstack.host_id: a holder is no guest of its own
HOLDER_LABEL_VM = "ttstack.netns.vm_id"
HOLDER_CMD = ["/bin/busybox", "sleep", "2147483647"]
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def holder_name(guest_name: str) -> str:
    return f"{guest_name}-netns"


def _busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    raise EngineError("deny_outgoing on docker needs a static busybox (Debian: busybox-static) on the agent host")


def holder_image_tar() -> bytes:
    """A root file system of one static busybox: all the holder runs is `busybox sleep`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, time.time()
        tar.addfile(info)
        tar.add(_busybox(), arcname="bin/busybox")
    return buf.getvalue()


def ensure_holder_image(client) -> str:
    import docker

    try:
        client.images.get(HOLDER_IMAGE)
        return HOLDER_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repository, tag = HOLDER_IMAGE.split(":")
    try:
        client.api.import_image_from_data(holder_image_tar(), repository=repository, tag=tag,
                                          changes=[f"CMD {json.dumps(HOLDER_CMD)}"])
    except docker.errors.DockerException as exc:
        raise EngineError(f"docker could not import the network holder image: {exc}") from exc
    return HOLDER_IMAGE


def endpoint(api, spec, ports: dict, hostname: str) -> tuple[dict, dict]:
    """(host config, create arguments) of the container that owns the guest's namespace: its hostname, its
    published ports, and the env network with the hostname as alias (docker's default bridge without one)."""
    host_config = {"port_bindings": ports}
    args = {"hostname": hostname, "ports": [int(p.split("/")[0]) for p in ports]}
    if spec.network:
        network = names.docker_network(spec.host_id, spec.network)
        host_config["network_mode"] = network
        args["networking_config"] = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=[hostname])})
    return host_config, args


def create_holder(client, spec, ports: dict, hostname: str):
    """The (created, not started) network holder of a guest."""
    host_config, args = endpoint(client.api, spec, ports, hostname)
    if spec.network:
        net = find_network(client, spec.host_id, spec.network) or {}
        # docker's DNS forwards names it does not know to these servers: the gateway, which the rules drop
        # (without it, a host whose resolver is on loopback would have docker forward from the host)
        host_config["dns"] = [subnet_and_gateway(net)[1]] if net else []
    created = client.api.create_container(
        image=ensure_holder_image(client), name=holder_name(spec.name),
        labels={HOLDER_LABEL_HOST: spec.host_id, HOLDER_LABEL_VM: spec.vm_id},
        host_config=client.api.create_host_config(restart_policy={"Name": "no"}, **host_config), detach=True, **args)
    return client.containers.get(created["Id"])


# ------------------------------------------------------------------------------------------- networks


def network_subnets(client) -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet of every docker network (bridges without containers have no route on the host)."""
    found = []
    for net in client.api.networks():
        for config in (net.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            if subnet.version == 4:
                found.append(subnet)
    return found


def find_network(client, host_id: str, network: str) -> dict | None:
    """The docker network of (this agent, network) as `docker network inspect` shows it, or None."""
    for net in client.api.networks(filters={"label": [f"{names.LABEL_HOST}={host_id}",
                                                      f"{names.LABEL_NETWORK}={network}"]}):
        return client.api.inspect_network(net["Id"])
    return None


def create_network(client, host_id: str, network: str, subnet: ipaddress.IPv4Network) -> dict:
    import docker

    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet),
                                                                       gateway=str(subnet.network_address + 1))])
    created = client.api.create_network(
        names.docker_network(host_id, network), driver="bridge", ipam=ipam,
        options={"com.docker.network.bridge.name": names.bridge(host_id, "docker", network)},
        labels={names.LABEL_HOST: host_id, names.LABEL_NETWORK: network}, check_duplicate=True)
    return client.api.inspect_network(created["Id"])


def our_networks(client, host_id: str) -> dict[str, dict]:
    """{network: docker network summary} of every env network of this agent."""
    found = {}
    for net in client.api.networks(filters={"label": [f"{names.LABEL_HOST}={host_id}"]}):
        network = (net.get("Labels") or {}).get(names.LABEL_NETWORK)
        if network:
            found[network] = net
    return found


def subnet_and_gateway(net: dict) -> tuple[str, str]:
    config = ((net.get("IPAM") or {}).get("Config") or [{}])[0]
    return config.get("Subnet", ""), config.get("Gateway", "")


# ------------------------------------------------------------------------------------- deny_outgoing


def deny_rules(peers: str = "", gateway: str = "", ipv6: bool = False) -> str:
    """iptables-restore input for a guest's namespace: loopback (docker's DNS at 127.0.0.11 included) and
    replies pass; the env's peers too (`peers` subnet, not its gateway, which is the host); the rest drops."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             "-A OUTPUT -o lo -j ACCEPT",
             "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    if peers and not ipv6:
        if gateway:
            lines.append(f"-A OUTPUT -d {gateway}/32 -j DROP")
        lines.append(f"-A OUTPUT -d {peers} -j ACCEPT")
    lines += ["-A OUTPUT -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def load_rules(pid: int, rules_v4: str, rules_v6: str) -> None:
    """Replace the filter table of the namespace of `pid` in one transaction (no moment without rules)."""
    for tool, rules, required in (("iptables-restore", rules_v4, True), ("ip6tables-restore", rules_v6, False)):
        if not shutil.which(tool):
            if required:
                raise EngineError(f"deny_outgoing needs {tool} on the agent host")
            continue
        argv = ["nsenter", "-t", str(pid), "-n", tool, "-w"]
        done = subprocess.run(argv, input=rules, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            if not required:  # a namespace without IPv6
                continue
            raise EngineError(f"deny_outgoing: {' '.join(argv)} failed: {done.stderr.strip()}")


def holders(client, host_id: str) -> dict[str, object]:
    """{vm id: holder container} of this agent."""
    found = {}
    for container in client.containers.list(all=True, filters={"label": [f"{HOLDER_LABEL_HOST}={host_id}"]}):
        vm_id = (container.labels or {}).get(HOLDER_LABEL_VM)
        if vm_id:
            found[vm_id] = container
    return found


def remove_stray_holders(client, host_id: str, keep: set[str]) -> list[str]:
    """Holders of VMs without a record (a crash between making the holder and the guest); returns vm ids."""
    import docker

    removed = []
    for vm_id, container in holders(client, host_id).items():
        if vm_id in keep:
            continue
        try:
            container.remove(force=True)
            removed.append(vm_id)
        except docker.errors.NotFound:
            pass
    return removed

"""Linux networking on the agent host for environment networks: bridges (`ip`), the subnets in use, and the
pool new networks take their subnet from (TTSTACK_NETWORK_POOL)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from agent.engines.base import EngineError
from agent.procutil import run_tool

PREFIX = 24  # one /24 per environment network on a host: 250 guests


def _ip(*args: str, check: bool = True):
    return run_tool(["ip", *args], error=EngineError, check=check, timeout=30)


def pool() -> ipaddress.IPv4Network:
    from agent import conf

    text = conf.network_pool()
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise EngineError(f"TTSTACK_NETWORK_POOL {text!r} is not an IPv4 network") from exc
    if network.prefixlen > PREFIX:
        raise EngineError(f"TTSTACK_NETWORK_POOL {text!r} is smaller than one /{PREFIX}")
    return network


def routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes (its own subnets, docker's, other agents'), from `ip route`."""
    found = []
    for table in ("main", "local"):
        for route in json.loads(_ip("-j", "-4", "route", "show", "table", table).stdout or "[]"):
            dst = route.get("dst", "")
            if dst and dst != "default":
                try:
                    found.append(ipaddress.IPv4Network(dst, strict=False))
                except ValueError:
                    continue
    return found


def pick_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first /24 of the pool that overlaps nothing in `taken`."""
    for candidate in pool().subnets(new_prefix=PREFIX):
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise EngineError(f"no free /{PREFIX} left in TTSTACK_NETWORK_POOL {pool()} for another environment network")


def gateway(subnet: ipaddress.IPv4Network) -> str:
    return str(subnet.network_address + 1)


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def bridge_up(name: str, alias: str, subnet: ipaddress.IPv4Network) -> None:
    """A bridge with the subnet's first address, no IPv6 (no link-local address a guest could reach)."""
    if not link_exists(name):
        _ip("link", "add", "name", name, "type", "bridge")
    _ip("link", "set", "dev", name, "alias", alias)
    disable_ipv6 = Path("/proc/sys/net/ipv6/conf") / name / "disable_ipv6"
    if disable_ipv6.exists():
        disable_ipv6.write_text("1\n")
    cidr = f"{gateway(subnet)}/{subnet.prefixlen}"
    addrs = json.loads(_ip("-j", "-4", "addr", "show", "dev", name).stdout or "[]")
    have = {f"{a['local']}/{a['prefixlen']}" for link in addrs for a in link.get("addr_info", [])}
    if cidr not in have:
        _ip("addr", "add", cidr, "dev", name)
    _ip("link", "set", "dev", name, "up")


def link_delete(name: str) -> None:
    if link_exists(name):
        _ip("link", "delete", "dev", name, check=False)


def aliased_links(prefix: str) -> dict[str, str]:
    """{interface: alias} of the interfaces whose alias starts with `prefix`."""
    links = json.loads(_ip("-j", "link", "show").stdout or "[]")
    return {link["ifname"]: link["ifalias"] for link in links if str(link.get("ifalias", "")).startswith(prefix)}

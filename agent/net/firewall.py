"""The host's iptables rules for one environment bridge: what its guests may reach on the host itself.

One chain per bridge (`names.chain`), reached from INPUT for packets arriving on the bridge and, for bridges
the agent makes itself (qemu), from FORWARD for packets entering or leaving it:

- INPUT: replies to connections the host opened (docker-proxy talking to a container), the env's name server
  when the bridge has one, the published host ports (TTSTACK_PORT_RANGE: what the host publishes for guests);
  everything else a guest sends to the host is dropped (the agent's API, databases, sshd ...).
- FORWARD (qemu bridges): frames between the bridge's own ports pass (br_netfilter hands bridged IPv4 to
  iptables, and docker sets FORWARD's policy to DROP); nothing is routed into or out of the bridge.
- OUTPUT, a second chain (`<chain>o`): the host opens no connection into a qemu bridge (QEMU's user-mode
  network of any guest is a host process: without this, a guest of another env would get in through it);
  into a docker bridge, the qemu processes (user `libvirt-qemu`) open none, for the same reason, while
  docker's port proxy still does.

ip6tables gets the INPUT drop too. Rules are written with `iptables -w`; `install` is idempotent (a chain is
filled once, ending with a marker rule that names a hash of its rules; a chain without that marker, new, half
filled or with other rules, is flushed and filled again; the jumps are added once), `remove` forgets a chain
that is already gone.
"""

from __future__ import annotations

import hashlib
import logging
import pwd
import shutil

from agent.engines.base import EngineError
from agent.procutil import run_tool

log = logging.getLogger(__name__)

TOOLS = ("iptables", "ip6tables")
QEMU_USER = "libvirt-qemu"


def _ipt(tool: str, *args: str, check: bool = True):
    return run_tool([tool, "-w", *args], error=EngineError, check=check, timeout=30)


def _jumps(bridge: str, chain: str, forward: bool) -> list[tuple[str, ...]]:
    jumps = [("INPUT", "-i", bridge, "-j", chain)]
    if forward:
        jumps += [("FORWARD", "-i", bridge, "-j", chain), ("FORWARD", "-o", bridge, "-j", chain)]
    return jumps


def _rules(bridge: str, *, ipv6: bool, forward: bool, dns_addr: str, ports: tuple[int, int] | None) -> list:
    rules = []
    if forward:
        rules.append(["-i", bridge, "-o", bridge, "-j", "ACCEPT"])
    rules.append(["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
    if forward:  # FORWARD, anything else: routed into or out of the bridge (INPUT's packets are for the host)
        rules.append(["-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "DROP"])
    if dns_addr and not ipv6:
        for proto in ("udp", "tcp"):
            rules.append(["-d", dns_addr, "-p", proto, "--dport", "53", "-j", "ACCEPT"])
    if ports and not ipv6:
        rules.append(["-p", "tcp", "--dport", f"{ports[0]}:{ports[1]}", "-j", "ACCEPT"])
    rules.append(["-j", "DROP"])
    return rules


def _output_rules(forward: bool) -> list:
    if forward:
        return [["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"], ["-j", "DROP"]]
    try:
        uid = pwd.getpwnam(QEMU_USER).pw_uid
    except KeyError:  # no libvirt here: no qemu process to keep out
        return []
    return [["-m", "owner", "--uid-owner", str(uid), "-j", "DROP"]]


def _marker(rules: list) -> tuple[str, ...]:
    """The chain's last rule: a comment naming a hash of the rules before it (a rule without a target only
    counts packets). Present means the chain was filled completely with exactly these rules."""
    digest = hashlib.sha256(repr(rules).encode()).hexdigest()[:16]
    return ("-m", "comment", "--comment", f"ttstack:{digest}")


def _fill(tool: str, chain: str, rules: list, jumps: list) -> None:
    marker = _marker(rules)
    # Filled already (every further VM of the env on this host): left alone. Refilling would flush a chain
    # that guards running guests, opening the host to them until the rules are back, and costs ~2 calls a rule.
    if _ipt(tool, "-C", chain, *marker, check=False).returncode != 0:
        _ipt(tool, "-N", chain, check=False)
        _ipt(tool, "-F", chain)
        for rule in (*rules, marker):
            _ipt(tool, "-A", chain, *rule)
    for base, *jump in jumps:
        if _ipt(tool, "-C", base, *jump, check=False).returncode != 0:
            _ipt(tool, "-I", base, "1", *jump)


def install(bridge: str, chain: str, *, forward: bool, dns_addr: str = "",
            ports: tuple[int, int] | None = None) -> None:
    """The bridge's chains and their jumps, as described above; IPv6 only when ip6tables is there."""
    for tool in TOOLS:
        if not shutil.which(tool):
            if tool == "iptables":
                raise EngineError("environment networks need iptables on the agent host")
            continue
        rules = _rules(bridge, ipv6=tool == "ip6tables", forward=forward, dns_addr=dns_addr, ports=ports)
        _fill(tool, chain, rules, _jumps(bridge, chain, forward))
        if tool == "iptables":
            out = chain + "o"
            _fill(tool, out, _output_rules(forward), [("OUTPUT", "-o", bridge, "-j", out)])


def remove(chain: str) -> None:
    """Every jump to `chain` and to its OUTPUT chain (whatever bridge they name), then the chains."""
    for tool in TOOLS:
        if not shutil.which(tool):
            continue
        for name in (chain, chain + "o"):
            for base in ("INPUT", "FORWARD", "OUTPUT"):
                for line in _ipt(tool, "-S", base).stdout.splitlines():
                    words = line.split()
                    if words[:2] == ["-A", base] and words[-2:] == ["-j", name]:
                        _ipt(tool, "-D", base, *words[2:], check=False)
            if _ipt(tool, "-F", name, check=False).returncode == 0:
                _ipt(tool, "-X", name, check=False)


def chains(prefix: str) -> set[str]:
    """The chains whose names start with `prefix` (this agent's), in iptables or ip6tables."""
    found = set()
    for tool in TOOLS:
        if not shutil.which(tool):
            continue
        for line in _ipt(tool, "-S").stdout.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "-N" and words[1].startswith(prefix):
                found.add(words[1])
    return found

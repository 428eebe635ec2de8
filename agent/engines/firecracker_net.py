"""The network of a firecracker guest: a tap with a /30 (host .1, guest .2) and iptables rules.

- nat POSTROUTING: MASQUERADE for the guest's outgoing traffic, and for published ports reached from
  127.0.0.1 (they arrive with a loopback source)
- nat PREROUTING and OUTPUT: DNAT publish_addr:host_port -> guest:port
- filter FORWARD: replies and DNAT'ed connections to the tap accepted; what the guest sends accepted
- deny_outgoing: NEW connections coming in from the tap are dropped (FORWARD: to anywhere, INPUT: to this
  host), before the accept; replies of connections to published ports are ESTABLISHED and still pass
Filter rules go to the top of their chains (Docker leaves the FORWARD policy at DROP); every rule applied is
recorded in the guest's metadata (`meta["rules"]`) so teardown removes exactly those.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.engines.base import EngineError
from agent.engines.probes import resolve_binary
from agent.procutil import run_tool


def _ip(*args: str, check: bool = True):
    return run_tool([resolve_binary("TTSTACK_IP_BIN", "ip") or "ip", *args], error=EngineError, check=check)


def _iptables(rule: list[str], action: str, check: bool = True):
    table, chain, *match = rule
    iptables = resolve_binary("TTSTACK_IPTABLES_BIN", "iptables") or "iptables"
    return run_tool([iptables, "-w", "-t", table, action, chain, *match], error=EngineError, check=check)


def link_exists(name: str) -> bool:
    if os.path.exists(f"/sys/class/net/{name}"):
        return True
    if not resolve_binary("TTSTACK_IP_BIN", "ip"):
        return False
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def rules(meta: dict) -> list[list[str]]:
    """[table, chain, match...] for the guest of `meta` (tap, guest_ip, port_map, publish_addr, ...)."""
    tap, guest = meta["tap"], meta["guest_ip"]
    comment = ["-m", "comment", "--comment", f"ttstack:{meta['name']}"]
    found = [["nat", "POSTROUTING", "-s", f"{guest}/32", "!", "-o", tap, "-j", "MASQUERADE", *comment],
             ["nat", "POSTROUTING", "-o", tap, "-s", "127.0.0.0/8", "-j", "MASQUERADE", *comment],
             ["filter", "FORWARD", "-o", tap, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT",
              "-j", "ACCEPT", *comment]]
    if meta["deny_outgoing"]:
        new_from_tap = ["-i", tap, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP", *comment]
        found += [["filter", "FORWARD", *new_from_tap], ["filter", "INPUT", *new_from_tap]]
    found.append(["filter", "FORWARD", "-i", tap, "-j", "ACCEPT", *comment])
    for guest_port, host_port in sorted(meta["port_map"].items(), key=lambda kv: int(kv[0])):
        dnat = ["-d", meta["publish_addr"], "-p", "tcp", "--dport", str(host_port), "-j", "DNAT",
                "--to-destination", f"{guest}:{guest_port}", *comment]
        found += [["nat", "PREROUTING", *dnat], ["nat", "OUTPUT", *dnat]]
    return found


def setup(meta: dict, save=lambda meta: None, tap_owner: tuple[int, int] | None = None) -> None:
    """Make the tap (owned by `tap_owner` uid/gid, for the jailer) unless it exists, address it, bring it
    up and apply the rules not applied yet, calling `save(meta)` after each one."""
    tap = meta["tap"]
    if not link_exists(tap):
        owner = ["user", str(tap_owner[0]), "group", str(tap_owner[1])] if tap_owner else []
        _ip("tuntap", "add", "dev", tap, "mode", "tap", *owner)
    _ip("addr", "replace", f"{meta['host_ip']}/30", "dev", tap)
    _ip("link", "set", "dev", tap, "up")
    localnet = Path(f"/proc/sys/net/ipv4/conf/{tap}/route_localnet")
    if meta["publish_addr"].startswith("127.") and localnet.exists():
        localnet.write_text("1\n")  # DNAT from 127.0.0.1 to the guest needs route_localnet
    wanted = rules(meta)
    # Inserted at the top last one first, so the filter rules end up in the order written.
    ordered = [("-I", r) for r in reversed(wanted) if r[0] == "filter"] + [
        ("-A", r) for r in wanted if r[0] == "nat"]
    for action, rule in ordered:
        if rule in meta["rules"]:
            continue
        _iptables(rule, action)
        meta["rules"].append(rule)
        save(meta)


def teardown(meta: dict) -> None:
    for rule in reversed(meta.get("rules", [])):
        _iptables(rule, "-D", check=False)  # already gone is fine
    meta["rules"] = []
    if link_exists(meta["tap"]):
        _ip("link", "del", "dev", meta["tap"], check=False)

"""FreeBSD networking of the bhyve and jail engines: ifconfig, and pf rules in one anchor per guest.

The anchors live under TTSTACK_PF_ANCHOR (default "ttstack"); pf.conf must hook them in:
  nat-anchor "ttstack/*"   rdr-anchor "ttstack/*"   anchor "ttstack/*"
(before the global `nat on $ext_if from <guest subnets> -> ($ext_if)` rule). See docs/engines.md.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent import conf
from agent.engines.base import EngineError
from agent.engines.probes import resolve_binary
from agent.procutil import run_tool


def pf_anchor(name: str) -> str:
    return f"{conf.option('TTSTACK_PF_ANCHOR')}/{name}"


def pf_rules(guest_ip: str, port_map: dict, publish_addr: str, deny_outgoing: bool,
             guest_if: str | None) -> list[str]:
    """Translation and filter rules for one guest: rdr publish_addr:host -> guest:port, and for deny_outgoing
    a block of everything the guest starts (replies to published ports match their rdr state and pass)."""
    ext_if = conf.option("TTSTACK_PF_EXT_IF")
    on = f"on {ext_if} " if ext_if else ""
    rules = []
    for guest_port, host_port in sorted(port_map.items(), key=lambda kv: int(kv[0])):
        rules.append(f"rdr pass {on}inet proto tcp from any to {publish_addr} port {host_port} "
                     f"-> {guest_ip} port {guest_port}")
    if deny_outgoing:
        rules.append(f"no nat inet from {guest_ip} to any")
        via = f"on {guest_if} " if guest_if else ""
        rules.append(f"block drop in quick {via}inet from {guest_ip} to any")
        rules.append(f"block drop out quick on ! lo0 inet from {guest_ip} to any")
    return rules


def _pfctl() -> str:
    return resolve_binary("TTSTACK_PFCTL_BIN", "pfctl") or "pfctl"


def pf_load(name: str, rules: list[str], rules_path: Path) -> None:
    rules_path.parent.mkdir(parents=True, exist_ok=True)
    rules_path.write_text("".join(f"{rule}\n" for rule in rules))
    run_tool([_pfctl(), "-a", pf_anchor(name), "-f", str(rules_path)], error=EngineError)


def pf_flush(name: str) -> None:
    run_tool([_pfctl(), "-a", pf_anchor(name), "-F", "all"], error=EngineError, check=False)


def ifconfig(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    tool = resolve_binary("TTSTACK_IFCONFIG_BIN", "ifconfig") or "ifconfig"
    return run_tool([tool, *args], error=EngineError, check=check)

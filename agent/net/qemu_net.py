"""The qemu side of an environment network: a Linux bridge the env's guests share, and its name server.

Per network, on this host: bridge `ttq<key>` holding the subnet's first address (the guests' name server,
nothing else: the bridge's firewall chain drops every other packet for the host, and routes nothing in or
out); each guest's second NIC is a libvirt tap on it, with the address the agent gave it through the seed.
`envdns.py` answers the env's hostnames on that address. State: DATA_DIR/networks/<bridge>/ with meta.json
(the subnet, kept so a re-made bridge gets the same one), hosts.json (what the name server answers), the
name server's pid file and log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from agent import procutil
from agent.net import firewall, hostnet, names

log = logging.getLogger(__name__)

ENGINE = "qemu"
DNS_SCRIPT = Path(__file__).with_name("envdns.py")


class QemuNetwork:
    def __init__(self, host_id: str, network: str, state_root: Path):
        self.host_id, self.network = host_id, network
        self.bridge = names.bridge(host_id, ENGINE, network)
        self.chain = names.chain(host_id, self.bridge)
        self.dir = state_root / self.bridge

    # --------------------------------------------------------------------------------------------- state

    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def subnet(self) -> ipaddress.IPv4Network | None:
        text = self.meta().get("subnet")
        return ipaddress.IPv4Network(text) if text else None

    def dns_addr(self) -> str:
        subnet = self.subnet()
        return hostnet.gateway(subnet) if subnet else ""

    # ------------------------------------------------------------------------------------------- make it

    def ensure(self, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        """Bridge, firewall chain and name server, each made when missing; returns the subnet."""
        subnet = self.subnet()
        if subnet is None:
            subnet = hostnet.pick_subnet(taken)
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = {"host_id": self.host_id, "engine": ENGINE, "network": self.network, "subnet": str(subnet)}
            (self.dir / "meta.json").write_text(json.dumps(meta) + "\n")
        hostnet.bridge_up(self.bridge, names.alias(self.host_id, ENGINE, self.network), subnet)
        firewall.install(self.bridge, self.chain, forward=True, dns_addr=hostnet.gateway(subnet))
        if not (self.dir / "hosts.json").exists():
            self.write_hosts({})
        self._ensure_dns(hostnet.gateway(subnet))
        return subnet

    def write_hosts(self, hosts: dict[str, str]) -> None:
        """What the name server answers, replaced in one rename (it reads the file when it changes)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "hosts.json.tmp"
        tmp.write_text(json.dumps(hosts, sort_keys=True) + "\n")
        os.replace(tmp, self.dir / "hosts.json")

    def _dns_pid(self) -> int | None:
        """The running name server of this network (its pid file, checked against its command line)."""
        try:
            pid = int((self.dir / "dns.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        ours = str(DNS_SCRIPT).encode() in cmdline and str(self.dir / "hosts.json").encode() in cmdline
        return pid if ours and procutil.pid_alive(pid) else None

    def _ensure_dns(self, addr: str) -> None:
        if self._dns_pid():
            return
        argv = [sys.executable, str(DNS_SCRIPT), "--listen", addr, "--hosts", str(self.dir / "hosts.json")]
        pid = procutil.spawn_detached(argv, self.dir / "dns.log", env={"PATH": os.environ.get("PATH", "")})
        (self.dir / "dns.pid").write_text(f"{pid}\n")

    # ------------------------------------------------------------------------------------------ remove it

    def remove(self) -> None:
        pid = self._dns_pid()
        if pid:
            procutil.kill_pid(pid, signal.SIGKILL)
        firewall.remove(self.chain)
        hostnet.link_delete(self.bridge)
        shutil.rmtree(self.dir, ignore_errors=True)


def existing(host_id: str) -> dict[str, str]:
    """{network: bridge} of every qemu environment bridge of this agent on the host."""
    found = {}
    for ifname, alias in hostnet.aliased_links(names.alias(host_id, ENGINE, "")).items():
        parsed = names.parse_alias(alias)
        if parsed and parsed[0] == host_id and parsed[1] == ENGINE:
            found[parsed[2]] = ifname
    return found


def state_networks(host_id: str, state_root: Path) -> set[str]:
    """Networks this agent has state for (a bridge may be gone: a reboot, or a crash half-way)."""
    found = set()
    if state_root.is_dir():
        for meta_file in state_root.glob("ttq*/meta.json"):
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("host_id") == host_id and meta.get("engine") == ENGINE:
                found.add(meta["network"])
    return found

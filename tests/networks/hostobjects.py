"""What an agent leaves on the host for its environment networks, found the way an operator would (docker,
`ip link`, `iptables -S`, /proc), to assert on and to clean up after a test whatever happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from tests.agent.conftest import docker_client, remove_containers_of


def docker_networks(host_id: str) -> list[str]:
    return sorted(n.name for n in docker_client().networks.list(filters={"label": [f"ttstack.host_id={host_id}"]}))


def holders(host_id: str) -> list[str]:
    return sorted(c.name for c in docker_client().containers.list(
        all=True, filters={"label": [f"ttstack.netns.host_id={host_id}"]}))


def bridges(host_id: str) -> list[str]:
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    return sorted(link["ifname"] for link in links if str(link.get("ifalias", "")).startswith(f"ttstack:{host_id}:"))


def chains(host_id: str) -> list[str]:
    found = set()
    for tool in ("iptables", "ip6tables"):
        out = subprocess.run([tool, "-w", "-S"], capture_output=True, text=True).stdout
        found |= {line.split()[1] for line in out.splitlines()
                  if line.startswith("-N ") and line.split()[1].startswith(f"TT-{host_id[:8]}-")}
    return sorted(found)


def name_servers(data_dir: Path) -> list[int]:
    """Running envdns processes of this agent (their command line names its data dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if any(b"envdns.py" in part for part in cmdline) and any(str(data_dir).encode() in p for p in cmdline):
                pids.append(int(entry.name))
    return sorted(pids)


def leftovers(host_id: str, data_dir: Path) -> dict[str, list]:
    return {"docker networks": docker_networks(host_id), "holders": holders(host_id), "bridges": bridges(host_id),
            "chains": chains(host_id), "name servers": name_servers(data_dir)}


def clean_up(host_id: str, data_dir: Path) -> None:
    """Everything an agent with this host id made, removed (containers first: networks with endpoints stay)."""
    if not host_id:
        return
    remove_containers_of(host_id)
    client = docker_client()
    for name in holders(host_id):
        with contextlib.suppress(Exception):
            client.containers.get(name).remove(force=True)
    for name in docker_networks(host_id):
        with contextlib.suppress(Exception):
            client.networks.get(name).remove()
    for pid in name_servers(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for chain in chains(host_id):
        for tool in ("iptables", "ip6tables"):
            for base in ("INPUT", "FORWARD", "OUTPUT"):
                out = subprocess.run([tool, "-w", "-S", base], capture_output=True, text=True).stdout
                for line in out.splitlines():
                    if line.endswith(f"-j {chain}"):
                        subprocess.run([tool, "-w", "-D", base, *line.split()[2:]], capture_output=True)
            subprocess.run([tool, "-w", "-F", chain], capture_output=True)
            subprocess.run([tool, "-w", "-X", chain], capture_output=True)
    for bridge in bridges(host_id):
        subprocess.run(["ip", "link", "delete", "dev", bridge], capture_output=True)

"""Names of the host objects behind one environment network, derived from the host id and the network name.

Every object is recognisable as this agent's (the host id is in it or on it), so reconcile removes only its
own: docker networks carry the labels `ttstack.host_id` / `ttstack.network`; Linux bridges an interface alias
`ttstack:<host id>:<engine>:<network>`; iptables chains start with `TT-<host id[:8]>-`.
"""

from __future__ import annotations

import hashlib

ALIAS_PREFIX = "ttstack:"
LABEL_HOST = "ttstack.host_id"
LABEL_NETWORK = "ttstack.network"


def key(host_id: str, engine: str, network: str) -> str:
    """10 hex digits naming one (agent, engine, network): short enough for a 15-character interface name."""
    return hashlib.sha256(f"{host_id}/{engine}/{network}".encode()).hexdigest()[:10]


def bridge(host_id: str, engine: str, network: str) -> str:
    """The Linux bridge: ttd<key> for docker (docker makes it), ttq<key> for qemu (the agent makes it)."""
    return f"tt{engine[0]}{key(host_id, engine, network)}"


def docker_network(host_id: str, network: str) -> str:
    return f"tt-{host_id[:8]}-{network}"


def chain_prefix(host_id: str) -> str:
    return f"TT-{host_id[:8]}-"


def chain(host_id: str, bridge_name: str) -> str:
    """The iptables chain holding the rules of one bridge (at most 28 characters: 12 + 13)."""
    return chain_prefix(host_id) + bridge_name


def alias(host_id: str, engine: str, network: str) -> str:
    return f"{ALIAS_PREFIX}{host_id}:{engine}:{network}"


def parse_alias(text: str) -> tuple[str, str, str] | None:
    """(host id, engine, network) of an alias written by `alias`, None for anything else."""
    if not text.startswith(ALIAS_PREFIX):
        return None
    parts = text[len(ALIAS_PREFIX):].split(":", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None

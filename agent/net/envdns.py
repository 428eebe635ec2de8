"""The name server of one qemu environment network: `python envdns.py --listen ADDR --hosts FILE`.

Answers A queries for the hostnames in FILE (JSON `{"hostname": "address"}`, re-read when it changes) and
nothing else: any other name is REFUSED (a resolver then asks its next server), never forwarded, so a guest
learns nothing through it about the world outside its environment. Runs detached on the bridge's address,
started and stopped by agent/net/bridge.py; it imports nothing from the agent (no Django at start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

TTL = 5  # seconds: a VM created or deleted is seen quickly


class EnvResolver(BaseResolver):
    def __init__(self, hosts_path: str):
        self.hosts_path = hosts_path
        self._stamp: tuple[int, int] | None = None
        self._hosts: dict[str, str] = {}
        self._lock = threading.Lock()

    def hosts(self) -> dict[str, str]:
        try:
            stat = os.stat(self.hosts_path)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return {}
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.hosts_path) as fh:
                        self._hosts = {str(k).lower(): str(v) for k, v in json.load(fh).items()}
                except (OSError, ValueError):
                    return self._hosts
                self._stamp = stamp
            return self._hosts

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        address = self.hosts().get(name)
        if address is None:
            reply.header.rcode = RCODE.REFUSED
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=TTL))
        return reply  # a known name without an answer of that type: NOERROR, empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--hosts", required=True)
    args = parser.parse_args()
    resolver = EnvResolver(args.hosts)
    logger = DNSLogger(log="-request,-reply,-truncated,-data", prefix=False)
    servers = [DNSServer(resolver, address=args.listen, port=53, tcp=tcp, logger=logger) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()

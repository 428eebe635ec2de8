"""Hold every packet sent to one NFQUEUE for a fixed time, then let it go: netem's `delay` without sch_netem.

This machine's kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off) but has NFQUEUE, so a slow link is
an iptables rule sending the host's outgoing packets to a queue, and this process, run inside the host's
network namespace (netlink is per namespace), giving each packet its ACCEPT verdict `delay` seconds after it
arrived. The nfnetlink_queue protocol is small enough to speak directly (linux/netfilter/nfnetlink_queue.h):

    python -m tests.netfleet.nfdelay QUEUE SECONDS      prints "ready" once bound, runs until killed

The rule uses --queue-bypass, so packets pass undelayed should this process die.
"""

from __future__ import annotations

import errno
import heapq
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
NLMSG_HEADER = struct.Struct("=IHHII")


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attrs: list[bytes], flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + b"".join(attrs)
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0) + body


def _messages(data: bytes):
    """(type, payload after nlmsghdr) of each netlink message in one datagram."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            return
        yield kind, data[offset + NLMSG_HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _packet_id(payload: bytes) -> int | None:
    offset = 4  # nfgenmsg
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            return None
        if kind & 0x7FFF == NFQA_PACKET_HDR:
            return struct.unpack_from(">I", payload, offset + 4)[0]
        offset += (length + 3) & ~3
    return None


def bind(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    config = [
        [_attr(NFQA_CFG_CMD, struct.pack(">BxH", NFQNL_CFG_CMD_BIND, 0))],
        [_attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
         _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536))],
    ]
    for attrs in config:
        sock.send(_message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK))
        for kind, payload in _messages(sock.recv(65536)):
            if kind == NLMSG_ERROR and (code := struct.unpack_from("=i", payload)[0]):
                raise OSError(-code, f"binding NFQUEUE {queue}: {errno.errorcode.get(-code, code)}")
    return sock


def run(queue: int, delay: float):
    sock = bind(queue)
    print("ready", flush=True)
    held: list[tuple[float, int]] = []  # (release time, packet id), earliest first
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        if select.select([sock], [], [], timeout)[0]:
            try:
                data = sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped some while we were busy: carry on
                    continue
                raise
            arrived = time.monotonic()
            for kind, payload in _messages(data):
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET and (pid := _packet_id(payload)) is not None:
                    heapq.heappush(held, (arrived + delay, pid))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = heapq.heappop(held)
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, pid))
            sock.send(_message(NFQNL_MSG_VERDICT, queue, [verdict]))


if __name__ == "__main__":
    run(int(sys.argv[1]), float(sys.argv[2]))

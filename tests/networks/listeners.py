"""A TCP server that only counts the connections it accepts: the "outside" or a host service in a test."""

from __future__ import annotations

import socket
import threading


class AcceptCounter:
    def __init__(self, addr: str, avoid: tuple[int, int] | None = None):
        """Listen on `addr` on a free port, outside the range `avoid` when given."""
        while True:
            self.sock = socket.create_server((addr, 0))
            self.port = self.sock.getsockname()[1]
            if avoid is None or not avoid[0] <= self.port <= avoid[1]:
                break
            self.sock.close()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()

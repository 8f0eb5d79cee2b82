"""Over capacity: the first ``max_clients`` clients are served, the others wait in line, first come,
first served (docs/protocol.md ``full``).

A client that connects while every seat is taken is told its place in line (``hello``'s ``line``,
then each frame's ``full`` error with ``position`` and ``retry_after``) and none of its frames
reaches the worker; when a served client leaves, the first in line takes its seat. So the clients
served keep the rate a class of ``max_clients`` gets, and the server never trades everyone's answers
for one more client's. Counts only: the line holds Socket.IO ids, never anything a client sent.
"""
from __future__ import annotations

import threading
from collections import OrderedDict


class Seats:
    def __init__(self, limit: int = 0):
        if limit < 0:
            raise ValueError(f"limit must be >= 0 (0: no limit), got {limit!r}")
        self.limit = limit
        self._served: set = set()
        self._line: OrderedDict = OrderedDict()  # sid -> None, in order of arrival
        self._lock = threading.Lock()

    def arrive(self, sid) -> int:
        """0 when ``sid`` is served at once, else its place in line (1: next)."""
        with self._lock:
            if not self.limit or len(self._served) < self.limit and not self._line:
                self._served.add(sid)
                return 0
            self._line[sid] = None
            return len(self._line)

    def leave(self, sid) -> None:
        """``sid`` is gone: its seat goes to the first in line."""
        with self._lock:
            self._line.pop(sid, None)
            if sid in self._served:
                self._served.discard(sid)
            while self._line and (not self.limit or len(self._served) < self.limit):
                first, _ = self._line.popitem(last=False)
                self._served.add(first)

    def position(self, sid) -> int:
        """0 when ``sid`` is served (or unknown), else its place in line."""
        with self._lock:
            return list(self._line).index(sid) + 1 if sid in self._line else 0

    def snapshot(self) -> dict:
        with self._lock:
            return {"limit": self.limit or None, "served": len(self._served), "waiting": len(self._line),
                    "over_capacity": bool(self._line)}

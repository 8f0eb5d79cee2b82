"""The teacher's class view on /admin: how the connected clients' current labels are distributed.

Anonymous and in memory only. ``record(client, label)`` is told each answer's main face's label (None
when the frame had no face); what comes out (``snapshot``) is counts and nothing else: no client key,
no image, no box. Each client counts once, by its latest label:

* ``current``: among clients answered in the last ``window`` seconds, how many showed each label
  (a client that left drops out once its last answer is older than the window);
* ``timeline``: the last ``buckets`` periods of ``bucket`` seconds, oldest first, the same count per
  period (a client whose label changed within a period counts under its latest one).

Memory is bounded: the timeline is a ring of ``buckets`` counters, and the clients' latest answers
are kept only while they still count (at most ``max_clients``, the least recently answered dropped).
The client keys (Socket.IO sids) stay inside this object.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict

NO_FACE = None  # the label recorded for an answer without a face


class ClassView:
    def __init__(self, window: float = 10.0, bucket: float = 10.0, buckets: int = 30, max_clients: int = 10_000,
                 clock=time.monotonic):
        if window <= 0 or bucket <= 0:
            raise ValueError(f"window and bucket must be positive, got {window!r}, {bucket!r}")
        if buckets < 1 or max_clients < 1:
            raise ValueError(f"buckets and max_clients must be >= 1, got {buckets!r}, {max_clients!r}")
        self.window, self.bucket, self.buckets, self.max_clients = window, bucket, buckets, max_clients
        self.clock = clock
        self._ring: list[tuple[int, Counter]] = [(-1, Counter()) for _ in range(buckets)]  # (period, counts)
        self._latest: OrderedDict = OrderedDict()  # client -> (label, time, period), oldest answer first
        self._lock = threading.Lock()

    def _period(self, now: float) -> int:
        return math.floor(now / self.bucket)

    def _counts(self, period: int) -> Counter:
        slot = period % self.buckets
        if self._ring[slot][0] != period:  # a period that has left the ring: its slot starts again
            self._ring[slot] = (period, Counter())
        return self._ring[slot][1]

    def _forget(self, now: float) -> None:
        # kept while it counts in `current` (window) or may still change the open period (bucket)
        keep = max(self.window, self.bucket)
        while self._latest:
            _, (_, t, _) = next(iter(self._latest.items()))
            if now - t < keep and len(self._latest) <= self.max_clients:
                break
            self._latest.popitem(last=False)

    def record(self, client, label: str | None, now: float | None = None) -> None:
        """``client``'s latest answer: the main face's label, or None (no face in its frame)."""
        now = self.clock() if now is None else now
        period = self._period(now)
        with self._lock:
            counts = self._counts(period)
            prev = self._latest.pop(client, None)
            if prev is not None and prev[2] == period:  # counted once per period: its latest label
                counts[prev[0]] -= 1
                if not counts[prev[0]]:
                    del counts[prev[0]]
            counts[label] += 1
            self._latest[client] = (label, now, period)
            self._forget(now)

    def __len__(self) -> int:
        """Clients whose latest answer is still kept (bounded by ``max_clients``)."""
        return len(self._latest)

    def snapshot(self, labels=(), now: float | None = None) -> dict:
        """JSON-ready counts, per label in the order of ``labels`` (then any other label seen)."""
        now = self.clock() if now is None else now
        period = self._period(now)
        with self._lock:
            self._forget(now)
            current = Counter(lab for lab, t, _ in self._latest.values() if now - t < self.window)
            periods = [self._ring[p % self.buckets][1] if self._ring[p % self.buckets][0] == p else Counter()
                       for p in range(period - self.buckets + 1, period + 1)]
        seen = {lab for c in [current, *periods] for lab in c if lab is not NO_FACE}
        order = list(labels) + sorted(seen - set(labels))

        def row(c: Counter) -> dict:
            return {"counts": [c.get(lab, 0) for lab in order], "no_face": c.get(NO_FACE, 0)}

        return {"labels": order, "window_s": self.window, "bucket_s": self.bucket,
                "current": dict(row(current), clients=sum(current.values())),
                # oldest first; the last period is the one still open (its end is now)
                "timeline": [row(c) for c in periods],
                "open_s": round(now - period * self.bucket, 1)}

"""Live numbers for the admin page: clients, frames/s, server latency percentiles since start.

Memory stays bounded however long the server runs: latencies go into a histogram of geometric
buckets (5 % wide, so a percentile is exact to within 5 %), frames/s counts the last few seconds.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque

_RATIO = 1.05
_MIN_MS = 0.1
_BUCKETS = int(math.log(600_000 / _MIN_MS, _RATIO)) + 2  # 0.1 ms .. 10 min


class LatencyHistogram:
    def __init__(self):
        self.counts = [0] * _BUCKETS
        self.n = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        i = 0 if ms <= _MIN_MS else min(_BUCKETS - 1, int(math.log(ms / _MIN_MS, _RATIO)) + 1)
        self.counts[i] += 1
        self.n += 1
        self.max = max(self.max, ms)

    def percentile(self, q: float) -> float | None:
        """The upper edge of the bucket holding the q-th percentile (q in 0..100), capped at the max seen."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q / 100 * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(self.max, _MIN_MS * _RATIO ** i)
        return self.max


class Stats:
    def __init__(self, fps_window: float = 5.0):
        self.started = time.time()
        self.fps_window = fps_window
        self.clients = 0
        self.frames = 0
        self.faces = 0
        self.errors: Counter = Counter()
        self.views: Counter = Counter()  # frames by the test-time views they got ("..., spread": over frames)
        self.latency = LatencyHistogram()
        self._recent: deque = deque()
        self._lock = threading.Lock()
        self.observers: list = []  # called with (ms, faces) per answered frame (webapp/metrics.py)

    def connected(self) -> None:
        with self._lock:
            self.clients += 1

    def disconnected(self) -> None:
        with self._lock:
            self.clients = max(0, self.clients - 1)

    def frame(self, ms: float, faces: int, views: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if views:
                self.views[views] += 1
            self.frames += 1
            self.faces += faces
            self.latency.add(ms)
            self._recent.append(now)
            self._trim(now)
        for observe in self.observers:
            observe(ms, faces)

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0] < now - self.fps_window:
            self._recent.popleft()

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            r = lambda v: None if v is None else round(v, 1)  # noqa: E731
            return {"clients": self.clients, "frames": self.frames, "faces": self.faces,
                    "fps": round(len(self._recent) / self.fps_window, 1),
                    "latency_ms": {"p50": r(self.latency.percentile(50)), "p95": r(self.latency.percentile(95)),
                                   "max": r(self.latency.max) if self.latency.n else None},
                    "errors": dict(self.errors), "views": dict(self.views), "uptime_s": round(time.time() - self.started)}

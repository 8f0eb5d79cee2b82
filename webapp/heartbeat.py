"""The inference worker's heartbeat: proof that the worker process still runs, on a pipe of its own.

The worker (``beat``) writes one byte every ``INTERVAL`` seconds from a thread of its own, so a worker
busy with a long batch still beats, and a frozen one (SIGSTOP, swapped out, deadlocked interpreter)
does not. The web process (``Monitor``) reads the pipe in a thread and keeps the time of the last
beat; the dispatcher's watchdog kills and restarts a worker whose last beat is older than its bound,
and /healthz reports it. Before, a frozen worker answered nothing while /healthz said 'ready', and
frames waited for the batch timeout (60 s) one batch after another.

A separate pipe keeps the batch protocol (``webapp.wire`` on stdin/stdout) as it is.
"""
from __future__ import annotations

import os
import threading
import time

INTERVAL = 0.5  # seconds between beats


def beat(fd: int, interval: float = INTERVAL) -> threading.Thread:
    """Worker side: write a byte to ``fd`` every ``interval`` s until the reader goes away."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")

    def run():
        while True:
            try:
                os.write(fd, b".")
            except OSError:  # the web process closed its end: nobody listens any more
                return
            time.sleep(interval)

    t = threading.Thread(target=run, name="fer-heartbeat", daemon=True)
    t.start()
    return t


class Monitor:
    """Web side, one per worker process: ``fd`` goes to the child (``pass_fds``), then ``started()``."""

    def __init__(self):
        self._r, self.fd = os.pipe()
        self.last = time.monotonic()

    def started(self) -> None:
        """Call once the child holds ``fd``: closes our copy (so its death reads as end of file) and
        starts reading beats."""
        os.close(self.fd)
        threading.Thread(target=self._read, name="fer-heartbeat-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            while os.read(self._r, 64):  # green under eventlet: waits without blocking the hub
                self.last = time.monotonic()
        except OSError:
            pass
        finally:
            try:
                os.close(self._r)
            except OSError:
                pass

    def discard(self) -> None:
        """The child never started: close both ends."""
        for fd in (self._r, self.fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def age(self) -> float:
        """Seconds since the last beat (or since the worker was started)."""
        return time.monotonic() - self.last

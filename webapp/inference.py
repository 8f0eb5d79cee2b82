"""The web process's side of inference: one worker subprocess, fed by one dispatcher thread.

TensorFlow never runs in the web process (under ``gunicorn -k eventlet`` a TF model called from green
threads stopped answering after a few hundred frames). Instead::

    socket handlers --infer()--> queue --dispatcher--> [worker stdin]  python -m webapp.worker
                    <--event---  results  <----------- [worker stdout]  (TensorFlow lives here)

* ``infer(jpeg)`` queues a request and waits on its event (a green wait under eventlet).
* ``role="explain"``: the same machinery runs the explainer (``python -m webapp.worker --explain``),
  which answers 'why' requests with Grad-CAM maps of 48x48 crops; the server starts it on the first
  'why', so that a server nobody asks costs no second TensorFlow process.
* The dispatcher takes the first queued request, then everything else already queued (up to
  ``max_batch_frames``), sends it as one batch, reads the answer and wakes each waiter. While the worker is
  busy, new requests pile up in the queue and go together next time: micro-batching without timers.
* A watchdog thread kills a worker that takes longer than ``worker_batch_timeout`` on a batch (or
  ``worker_start_timeout`` to start), and a ready worker whose heartbeat (webapp/heartbeat.py) is older
  than ``worker_heartbeat_timeout``. A dead worker fails its batch's requests with 'worker_crashed'; the
  dispatcher starts a new worker (backing off when it keeps dying). Every request that is not with a
  worker gets 'starting' as soon as there is no worker to answer it: the queued ones when the worker
  dies or has been silent for ``worker_unresponsive_after`` (well before it is replaced), new ones until
  a worker is ready and beating again. Before, the queued ones waited for the replacement to load.
* The worker's stderr (its log lines, and what libjpeg, libpng and TensorFlow print from C) is read
  here and logged line by line under the log rules of webapp/logsafe.py.

Only ``threading``, ``queue`` and ``subprocess`` are used, so the same code runs on real threads
(tests, threading async mode) and on greenlets once eventlet has monkey-patched those modules
(gunicorn -k eventlet, python -m webapp): pipe reads then yield to the hub instead of blocking it.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import heartbeat, logsafe, wire
from .config import WorkerConfig

log = logging.getLogger("webapp.inference")
_WAKE = object()  # queued by the watchdog so that an idle dispatcher restarts a dead worker at once
ROOT = Path(__file__).resolve().parent.parent


class InferenceError(Exception):
    """A frame that got no result; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _not_answering() -> InferenceError:
    """What a frame gets while no worker can answer it (one that is being replaced, or silent): the
    page retries it (docs/protocol.md)."""
    return InferenceError("starting", "the inference worker is not answering; it is being restarted")


class _Request:
    __slots__ = ("id", "data", "done", "result", "error", "cancelled", "client", "meta", "queued")

    def __init__(self, rid: int, data: bytes, client: str | None = None, meta: dict | None = None):
        self.id, self.data, self.client, self.meta = rid, data, client, meta
        self.queued = time.monotonic()
        self.done = threading.Event()
        self.result = self.error = None
        self.cancelled = False

    def fail(self, error: InferenceError) -> None:
        """Answer the waiting handler with ``error``."""
        self.error = error
        self.done.set()


class InferenceClient:
    ROLES = ("frames", "explain")

    def __init__(self, config: WorkerConfig, python: str | None = None, role: str = "frames"):
        if role not in self.ROLES:
            raise ValueError(f"role must be one of {self.ROLES}, got {role!r}")
        self.config = config                 # handed to each worker it starts, whole
        self.python = python or sys.executable
        self.role = role
        self._beats: heartbeat.Monitor | None = None
        self.info: dict | None = None        # the worker's 'ready' message (labels, members, ...)
        self.state = "stopped"               # stopped | starting | ready | failed | closed
        self.last_error: str | None = None   # why the last worker failed (shown on /healthz)
        self.restarts = 0
        self.batches = self.frames = 0
        # called with each answered batch's report: frames, queue_s (each request's wait), roundtrip_s,
        # and the worker's own worker_s and model_s (webapp/metrics.py)
        self.observers: list = []
        self._q: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._deadline: float | None = None  # watchdog: kill the worker if still busy at this time
        self._closed = False
        self._ready = threading.Event()
        self._start_lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def responsive(self) -> bool:
        """False when the worker's last heartbeat is older than ``worker_unresponsive_after``."""
        return not self._silent_for(self.config.worker_unresponsive_after)

    def _silent_for(self, bound: float) -> bool:
        """Whether the worker's last heartbeat is older than ``bound`` seconds (0: never)."""
        beats = self._beats
        return bool(bound) and beats is not None and beats.age() > bound

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None else None

    def start(self) -> "InferenceClient":
        """Start the dispatcher (which starts the worker); returns at once, see ``wait_ready``."""
        with self._start_lock:  # the explainer is started by whichever 'why' handler comes first
            if self._dispatcher is None and not self._closed:
                self._start_threads()
        return self

    def _start_threads(self) -> None:
        self.state = "starting"
        self._dispatcher = threading.Thread(target=self._run, name=f"fer-{self.role}-dispatcher", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"fer-{self.role}-watchdog", daemon=True)
        self._dispatcher.start()
        self._watchdog.start()
        atexit.register(self.close)

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def infer(self, data: bytes, timeout: float = 30.0, client: str | None = None, meta: dict | None = None) -> dict:
        """{faces, width, height} for one encoded frame, or InferenceError. ``client``: the video
        stream the frame belongs to, whose faces the worker follows from frame to frame. ``meta``:
        what else this request asks (frames: ``{"crop": True}`` adds the main face's 48x48 crop;
        the explainer: ``{"class": i}``, the class to explain), sent to the worker with it."""
        if self._closed:
            raise InferenceError("unavailable", "the server is shutting down")
        if self.state != "ready":
            if self.state == "failed":
                raise InferenceError("unavailable", "the model could not be loaded; see the server log")
            raise InferenceError("starting", "the model is loading, try again in a moment")
        if not self.responsive:
            raise _not_answering()
        req = _Request(next(self._ids), data, client, meta)
        self._q.put(req)
        if not req.done.wait(timeout):
            req.cancelled = True  # the dispatcher drops it if it has not sent it yet
            raise InferenceError("timeout", f"no result within {timeout:g} s")
        if req.error is not None:
            raise req.error
        return req.result

    def close(self, timeout: float = 5.0) -> None:
        """Stop the dispatcher and the worker. The batch in flight gets ``timeout`` seconds to be
        answered; then the worker is killed and its frames fail with 'unavailable'. The worker's
        stdin (closing it ends an idle worker) is closed only then: the dispatcher may be writing
        a batch into it."""
        if self._closed:
            return
        self._closed = True
        self.state = "closed"
        self._q.put(None)
        d = self._dispatcher
        if d is not None and d is not threading.current_thread():
            try:
                d.join(timeout)
                if d.is_alive() and self._proc is not None:
                    self._proc.kill()
                    d.join(2.0)
            except Exception:  # noqa: BLE001 - at interpreter exit the hub may be gone
                pass
        self._stop_worker(2.0)

    # -- the worker process ----------------------------------------------------------------------
    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [self.python, "-m", "webapp.worker", self.config.to_json()] + (["--explain"] if self.role == "explain" else [])
        beats = heartbeat.Monitor()
        cmd += ["--heartbeat-fd", str(beats.fd)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=env, cwd=str(ROOT), pass_fds=(beats.fd,))
        except BaseException:
            beats.discard()
            raise
        beats.started()
        self._beats = beats
        logsafe.pump(self._proc.stderr, logging.getLogger("webapp.worker"))

    def _stop_worker(self, timeout: float = 5.0) -> None:
        p = self._proc
        if p is None:
            return
        try:
            p.stdin.close()
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            p.wait(timeout)
        except Exception:  # noqa: BLE001 - lingering (or the hub is gone at exit): kill it
            try:
                p.kill()
                p.wait(2)
            except Exception:  # noqa: BLE001
                pass
        try:
            p.stdout.close()
        except Exception:  # noqa: BLE001
            pass

    def _start_worker(self) -> bool:
        self.state = "starting"
        self._ready.clear()
        self._spawn()
        self._deadline = time.monotonic() + self.config.worker_start_timeout
        try:
            header, _ = wire.read_message(self._proc.stdout)
        except wire.WireError:
            header = {"type": "fatal", "reason": "the worker exited while starting (see the server log)"}
        finally:
            self._deadline = None
        if header.get("type") != "ready":
            self.last_error = str(header.get("reason", header))
            log.error("inference worker failed to start: %s", self.last_error)
            self._stop_worker(2)
            return False
        self.info = header
        self.state = "ready"
        self._ready.set()
        log.info("%s %s ready (%s members, %.1f s)", "explainer" if self.role == "explain" else "inference worker", self._proc.pid,
                 len(header.get("members", [])), header.get("load_s", 0))
        return True

    # -- the dispatcher ----------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._closed:
            if self._proc is None or self._proc.poll() is not None or self.state != "ready":
                if self._proc is not None:
                    self._fail_queued(_not_answering)  # not kept waiting for the new worker to load
                    self._stop_worker(2)
                    self.restarts += 1
                ok = not self._closed and self._start_worker()
                if self._closed:
                    break
                if not ok:
                    failures += 1
                    self._ready.clear()
                    self.state = "failed"
                    self._fail_queued(lambda: InferenceError("unavailable", "the model could not be loaded"))
                    self._sleep_unless_closed(min(60.0, 2.0 ** failures))
                    continue
                failures = 0
            req = self._q.get()
            if req is None:
                break
            if req is _WAKE:
                continue
            more, closing = self._take_queued(self.config.max_batch_frames - 1)
            self._closed = self._closed or closing
            batch = [r for r in [req, *more] if not r.cancelled]
            if batch and (self.state != "ready" or self._proc.poll() is not None or not self.responsive):
                for r in batch:  # the worker died or went silent while the dispatcher waited for work
                    r.fail(_not_answering())
            elif batch:
                self._send(batch)
        self.state = "closed"
        self._fail_queued(lambda: InferenceError("unavailable", "the server is shutting down"))

    def _send(self, batch: list[_Request]) -> None:
        proc = self._proc
        sent = time.monotonic()
        try:
            self._deadline = sent + self.config.worker_batch_timeout
            head = {"type": "batch", "ids": [r.id for r in batch]}
            if any(r.client is not None for r in batch):  # per-client face tracking in the worker
                head["clients"] = [r.client for r in batch]
            if any(r.meta for r in batch):
                head["meta"] = [r.meta or {} for r in batch]
            wire.write_message(proc.stdin, head, [r.data for r in batch])
            header, _ = wire.read_message(proc.stdout)
            if header.get("type") != "results":
                raise wire.WireError(f"unexpected message {header.get('type')!r}")
        except (wire.WireError, OSError, ValueError) as e:
            # The worker died (or was killed by the watchdog): these frames are lost, the next loop restarts it.
            self._deadline = None
            code = proc.poll()
            self.last_error = f"worker crashed ({type(e).__name__}; exit code {code})"
            if self._closed:  # close() stopped it: its frames get 'unavailable'
                log.info("inference worker %s stopped with a batch of %d in flight", proc.pid, len(batch))
            else:
                log.error("inference worker %s failed during a batch of %d: %s", proc.pid, len(batch), self.last_error)
            self._ready.clear()
            self.state = "starting"
            err = (InferenceError("unavailable", "the server is shutting down") if self._closed else
                   InferenceError("worker_crashed", "the inference worker stopped; it is being restarted"))
            for r in batch:
                r.fail(err)
            return
        self._deadline = None
        self.batches += 1
        self.frames += len(batch)
        self._report(batch, sent, header)
        by_id = {r.id: r for r in batch}
        for res in header.get("results", []):
            r = by_id.pop(res.get("id"), None)
            if r is None:
                continue
            if "error" in res:
                r.fail(InferenceError(res.get("code", "bad_image"), str(res["error"])))
                continue
            r.result = {k: v for k, v in res.items() if k != "id"}
            if self.role == "frames":
                r.result.setdefault("faces", [])
            r.result["batch"] = len(batch)
            r.done.set()
        for r in by_id.values():  # the worker skipped one: should not happen, never leave it waiting
            r.fail(InferenceError("internal", "no result for this frame"))

    def _report(self, batch: list[_Request], sent: float, header: dict) -> None:
        if not self.observers:
            return
        ms = header.get("timing") or {}
        report = {"frames": len(batch), "queue_s": [sent - r.queued for r in batch],
                  "roundtrip_s": time.monotonic() - sent}
        for stage in ("worker", "model"):
            if isinstance(ms.get(stage), (int, float)):
                report[f"{stage}_s"] = ms[stage] / 1000
        for observe in self.observers:
            try:
                observe(report)
            except Exception as e:  # noqa: BLE001 - a metric must never fail a batch
                log.error("batch observer failed: %s", type(e).__name__)

    def _take_queued(self, limit: int | None = None) -> tuple[list, bool]:
        """Up to ``limit`` requests waiting in the queue (None: all), taken without waiting, and
        whether a close sentinel was among them (it ends the take)."""
        taken = []
        while limit is None or len(taken) < limit:
            try:
                r = self._q.get_nowait()
            except queue.Empty:
                break
            if r is None:
                return taken, True
            if r is not _WAKE:
                taken.append(r)
        return taken, False

    def _fail_queued(self, error) -> None:
        """Answer every queued request with ``error()`` (a new exception each: each is raised in its
        own handler). The watchdog calls it too: a close sentinel it finds is put back for the
        dispatcher."""
        closing = False
        while True:
            taken, saw_close = self._take_queued()
            for r in taken:
                r.fail(error())
            if not saw_close:
                break
            closing = self._closed = True  # what was queued after the sentinel is failed too
        if closing:
            self._q.put(None)

    def _sleep_unless_closed(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closed and time.monotonic() < end:
            time.sleep(min(0.5, end - time.monotonic()))

    # -- the watchdog ------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.5)
            d, p = self._deadline, self._proc
            if d is not None and p is not None and time.monotonic() > d and p.poll() is None:
                self._kill(p, "did not answer in time")
            # -- heartbeat: a ready worker that stopped beating (or died while idle) is restarted now --
            beats = self._beats
            if self.state != "ready" or p is None or p is not self._proc or beats is None:
                continue
            if p.poll() is not None or self._silent_for(self.config.worker_heartbeat_timeout):
                if p.poll() is None:
                    self._kill(p, f"sent no heartbeat for {beats.age():.1f} s (bound {self.config.worker_heartbeat_timeout:g} s)")
                self.last_error = "worker unresponsive or gone: restarted"
                self.state = "starting"
                self._ready.clear()
                self._q.put(_WAKE)
            elif not self.responsive:  # silent: what waits behind its batch gets 'starting' now, not at the kill
                self._fail_queued(_not_answering)

    @staticmethod
    def _kill(p, why: str) -> None:
        log.error("inference worker %s %s: killing it", p.pid, why)
        try:
            p.kill()
        except OSError:
            pass

    def status(self) -> dict:
        return {"state": self.state, "pid": self.pid, "restarts": self.restarts, "batches": self.batches,
                "frames": self.frames, "mean_batch": round(self.frames / self.batches, 2) if self.batches else None,
                "last_error": self.last_error, "members": (self.info or {}).get("members"),
                "labels": (self.info or {}).get("labels"), "rule": (self.info or {}).get("rule"),
                "tta": (self.info or {}).get("tta"), "queued": self._q.qsize(),
                "heartbeat_s": round(self._beats.age(), 1) if self._beats is not None else None,
                "runtime": (self.info or {}).get("runtime"), "precision": (self.info or {}).get("precision"),
                "track_every": (self.info or {}).get("track_every"), "detector": (self.info or {}).get("detector"),
                "runtime_choice": (self.info or {}).get("runtime_choice")}

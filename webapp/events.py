"""Socket.IO events (the protocol is in docs/protocol.md).

client -> server  ``frame``  one binary payload: the JPEG bytes of one video frame
server -> client  ``result`` {faces: [{box, label, probabilities, members}], width, height, ms, batch, views, spread}
                  ``error``  {code, reason}
                  ``hello``  {max_fps, max_frame_bytes, line, labels, members, views, why_interval, why_ready} on connect
client -> server  ``why``    one binary payload: a frame whose main face is to be explained
server -> client  ``why_result`` {crop, size, box, label, probabilities, members, maps, width, height, ms}
                  ``why_error``  {code, reason[, retry_after]}

Each client may have one frame in flight and at most ``max_fps`` frames per second; a frame breaking
either rule, or any payload that is not one binary image, gets an ``error`` for that client only.
Over ``max_clients`` a client waits in line (webapp/seats.py): its frames get ``full`` with its
place in line until a served client leaves. A client that keeps breaking the rules (``max_violations``
within ``violation_window`` seconds) gets a
last error, ``abuse``, and is disconnected. Frame bytes are held in memory for the request and never
written anywhere; logs carry no image data.

A ``why`` ("what the network saw, and why") goes through the frame worker like a frame, with the
client's face tracker, which returns the main face's 48x48 crop too; the crop then goes to the
explainer process (started on the first ``why``; niced, one TensorFlow thread) for Grad-CAM maps.
So the frame worker's queue never waits for an explanation. One ``why`` in flight per client and one
per ``why_interval`` seconds; its answer goes to that client only and is neither stored nor logged.

Answers go to the asking client only and bypass the message queue (``ignore_queue``): with several
server processes behind a sticky proxy, that client is always connected to this very process.

``init_app(socketio)`` registers the handlers on an app's SocketIO; they reach that app's state
through ``current_app``, so each app created in a process serves its own clients.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque

from flask import current_app, request
from flask_socketio import emit

from .inference import InferenceError

log = logging.getLogger("webapp.events")


# Errors that only a client breaking the protocol gets (a page following docs/protocol.md never does).
VIOLATIONS = frozenset({"bad_frame", "empty", "too_large", "bad_image", "busy", "rate_limited", "unknown_event"})


class ClientGate:
    """One frame in flight, and at most ``max_fps`` accepted frames in any one-second window; counts
    the client's protocol violations to tell when it should be disconnected."""

    def __init__(self):
        self.in_flight = False
        self.accepted: deque = deque()
        self.violations: deque = deque()
        self.closing = False
        self.why = WhyGate()
        self._lock = threading.Lock()

    def violation(self, limit: int, window: float, now: float | None = None) -> bool:
        """Record one violation; True when there were more than ``limit`` in the last ``window``
        seconds (the client is then to be disconnected; once only). ``limit`` 0: never."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not limit or self.closing:
                return False
            self.violations.append(now)
            while self.violations and self.violations[0] <= now - window:
                self.violations.popleft()
            if len(self.violations) > limit:
                self.closing = True
                return True
            return False

    def begin(self, max_fps: float, now: float | None = None) -> str | None:
        """None when the frame may go ahead (then call ``end``), else the error code."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.in_flight:
                return "busy"
            while self.accepted and self.accepted[0] <= now - 1.0:
                self.accepted.popleft()
            if len(self.accepted) >= max_fps:
                return "rate_limited"
            self.in_flight = True
            self.accepted.append(now)
            return None

    def end(self) -> None:
        with self._lock:
            self.in_flight = False


class WhyGate:
    """One 'why' request in flight per client, and at most one accepted per ``interval`` seconds."""

    def __init__(self):
        self.in_flight = False
        self.last: float | None = None  # when the last one was accepted
        self._lock = threading.Lock()

    def begin(self, interval: float, now: float | None = None) -> tuple[str | None, float]:
        """(None, 0) when the request may go ahead (then call ``end``), else (error code, seconds to wait)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.in_flight:
                return "busy", 0.0
            if self.last is not None and now - self.last < interval:
                return "rate_limited", interval - (now - self.last)
            self.in_flight, self.last = True, now
            return None, 0.0

    def end(self) -> None:
        with self._lock:
            self.in_flight = False


REASONS = {
    "busy": "a frame is already being processed: wait for its result before sending the next",
    "rate_limited": "too many frames per second",
    "bad_frame": "expected one binary payload (the JPEG bytes of one frame)",
    "empty": "empty frame",
    "too_large": "frame over the size limit",
    "internal": "the frame could not be processed",
    "unknown_event": "unknown event",
    "abuse": "too many frames breaking the protocol: disconnected",
    "full": "the server is serving as many students as it can: you are in line, first come first served",
}


def _state():
    return current_app.extensions["fer"]


WHY_REASONS = {
    "busy": "an explanation is already being computed for you: wait for it",
    "no_face": "no face in this frame",
    "bad_frame": "expected one binary payload (the JPEG bytes of one frame)",
    "empty": "empty frame",
    "internal": "the explanation could not be computed",
}


def _error(code: str, reason: str | None = None, event: str = "error", **extra) -> None:
    """Answer the current client with error ``code`` on ``event`` ('error' for frames, 'why_error'
    for explanations), count it, and count a protocol violation towards a disconnect."""
    st = _state()
    st.stats.error(code if event == "error" else f"why_{code}")
    reasons = REASONS if event == "error" else WHY_REASONS
    emit(event, {"code": code, "reason": reason or reasons.get(code, code), **extra}, ignore_queue=True)
    if code in VIOLATIONS:
        gate = st.gates.get(request.sid)
        cfg = st.config
        if gate is not None and gate.violation(cfg.max_violations, cfg.violation_window):
            st.stats.error("abuse")
            log.warning("client %s disconnected after %d protocol violations in %g s (last: %s)",
                        _peer(), cfg.max_violations + 1, cfg.violation_window, code)
            emit("error", {"code": "abuse", "reason": REASONS["abuse"]}, ignore_queue=True)
            _close_client()


def _peer() -> str:
    """The client's address, for the log (the proxy's unless FER_TRUST_PROXY is set)."""
    return str(request.remote_addr or "?")[:64]


def _close_client() -> None:
    """Disconnect the current client: its Socket.IO session, then its Engine.IO connection (which
    sends what is queued, the last error included, before closing), so that it cannot carry on."""
    server = current_app.extensions["socketio"].server
    sid, ns = request.sid, request.namespace or "/"
    try:
        eio_sid = server.manager.eio_sid_from_sid(sid, ns)
        server.disconnect(sid, namespace=ns, ignore_queue=True)
        if eio_sid is not None:
            server.eio.disconnect(eio_sid)
    except Exception as e:  # noqa: BLE001 - already gone, or a test client without a transport
        log.debug("disconnect: %s", type(e).__name__)


def on_connect(auth=None):
    st = _state()
    if st.stopping:
        # A page reconnecting after the stop closed it would otherwise hold the server's stop (gunicorn
        # waits up to its graceful timeout for open connections): it is refused and retries elsewhere.
        return False
    st.gates[request.sid] = ClientGate()
    st.stats.connected()
    line = st.seats.arrive(request.sid)
    if line:
        log.info("over capacity: client %s waits in line at %d (%d served)", _peer(), line, st.config.max_clients)
    info = st.inference.info if st.inference is not None else None
    emit("hello", {"max_fps": st.config.max_fps, "max_frame_bytes": st.config.max_frame_bytes, "line": line,
                   "labels": (info or {}).get("labels"), "members": (info or {}).get("members"),
                   "views": (info or {}).get("tta"),
                   "why_interval": st.config.why_interval if st.explainer is not None else None,
                   # false until the explainer has loaded: the page says the first 'why' takes seconds
                   "why_ready": st.explainer.ready if st.explainer is not None else None},
         ignore_queue=True)


def on_disconnect(reason=None):
    st = _state()
    if st.gates.pop(request.sid, None) is not None:
        st.stats.disconnected()
    st.seats.leave(request.sid)


def _full(st, event: str = "error") -> bool:
    """Answer 'full' (with the client's place in line) when the client waits for a seat."""
    line = st.seats.position(request.sid)
    if line:
        _error("full", f"{REASONS['full']} (number {line})", event, position=line, retry_after=st.config.full_retry)
    return bool(line)


def _checked_frame(args, event: str):
    """(the app's state, the frame's bytes, the client's gate) where ``args`` is one binary within
    the size limit from a connected client; else None, the client answered with the error on ``event``."""
    st = _state()
    if len(args) != 1 or not isinstance(args[0], (bytes, bytearray)):
        return _error("bad_frame", event=event)
    data = args[0]
    if not data:
        return _error("empty", event=event)
    if len(data) > st.config.max_frame_bytes:
        return _error("too_large", f"frame of {len(data)} bytes over the limit of {st.config.max_frame_bytes}", event)
    gate = st.gates.get(request.sid)
    if gate is None:  # a frame racing its own disconnect
        return _error("internal", event=event)
    return st, data, gate


def on_frame(*args):
    t0 = time.perf_counter()
    checked = _checked_frame(args, "error")
    if checked is None:
        return
    st, data, gate = checked
    cfg = st.config
    if _full(st):  # before the rate gate: a waiting client's frames reach no worker
        return None
    code = gate.begin(cfg.max_fps)
    if code == "rate_limited":
        return _error(code, f"more than {cfg.max_fps:g} frames per second")
    if code:
        return _error(code)
    try:
        if st.inference is None:
            raise InferenceError("unavailable", "this server runs without an inference worker")
        out = st.inference.infer(bytes(data), timeout=cfg.request_timeout, client=request.sid)
    except InferenceError as e:
        return _error(e.code, e.reason)
    except Exception as e:  # noqa: BLE001 - the client gets a reason, the log gets the type only
        log.error("frame failed: %s", type(e).__name__)
        return _error("internal")
    finally:
        gate.end()
    ms = (time.perf_counter() - t0) * 1000
    out["ms"] = round(ms, 1)
    views = out.get("views")
    st.stats.frame(ms, len(out["faces"]), f"{views}, spread" if views and out.get("spread") else views)
    st.classview.record(request.sid, out["faces"][0]["label"] if out["faces"] else None)  # largest face first
    emit("result", out, ignore_queue=True)


def _explainer_ready(st, deadline: float):
    """The explainer, started if it is not yet, once it is ready (InferenceError if it cannot be by
    ``deadline``)."""
    ex = st.explainer
    ex.start()
    while not ex.ready:
        if ex.state in ("failed", "closed"):
            raise InferenceError("unavailable", "the explainer could not be loaded; see the server log")
        left = deadline - time.monotonic()
        if left <= 0:
            raise InferenceError("starting", "the explainer is still loading: try again in a few seconds")
        ex.wait_ready(min(0.5, left))
    return ex


def on_why(*args):
    """A frame whose main face is to be explained: its crop, the ensemble's label and Grad-CAM maps."""
    t0 = time.perf_counter()
    checked = _checked_frame(args, "why_error")
    if checked is None:
        return
    st, data, gate = checked
    cfg = st.config
    if st.inference is None or st.explainer is None:
        return _error("unavailable", "explanations are turned off on this server", "why_error")
    if _full(st, "why_error"):
        return None
    code, wait = gate.why.begin(cfg.why_interval)
    if code == "rate_limited":
        return _error(code, f"one explanation per {cfg.why_interval:g} s: try again in {wait:.1f} s", "why_error",
                      retry_after=round(wait, 2))
    if code:
        return _error(code, event="why_error")
    deadline = time.monotonic() + cfg.request_timeout
    try:
        st.explainer.start()  # loads (the first time) while the frame worker finds the face
        out = st.inference.infer(bytes(data), timeout=cfg.request_timeout, client=request.sid, meta={"crop": True})
        if not out["faces"] or "crop" not in out:
            raise InferenceError("no_face", WHY_REASONS["no_face"])
        face = out["faces"][0]
        labels = list(face["probabilities"])
        ex = _explainer_ready(st, deadline)
        maps = ex.infer(base64.b64decode(out["crop"]), timeout=max(0.1, deadline - time.monotonic()),
                        meta={"class": labels.index(face["label"])})
    except InferenceError as e:
        return _error(e.code, e.reason, "why_error")
    except Exception as e:  # noqa: BLE001 - the client gets a reason, the log gets the type only
        log.error("why failed: %s", type(e).__name__)
        return _error("internal", event="why_error")
    finally:
        gate.why.end()
    emit("why_result", {"crop": out["crop"], "size": 48, "box": face["box"], "label": face["label"],
                        "probabilities": face["probabilities"], "members": face["members"], "maps": maps["maps"],
                        "width": out["width"], "height": out["height"],
                        "ms": round((time.perf_counter() - t0) * 1000, 1)}, ignore_queue=True)


def on_other(event, *args):
    _error("unknown_event", f"unknown event {str(event)[:40]!r}: send 'frame' or 'why'")


def init_app(socketio) -> None:
    """Register the protocol's handlers on ``socketio`` (Flask-SocketIO's ``on_event``)."""
    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
    socketio.on_event("frame", on_frame)
    socketio.on_event("why", on_why)
    socketio.on_event("*", on_other)  # any other event: an error, not silence

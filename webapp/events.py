"""Socket.IO events (the protocol is in docs/protocol.md).

client -> server  ``frame``  one binary payload: the JPEG bytes of one video frame
server -> client  ``result`` {faces: [{box, label, probabilities, members}], width, height, ms, batch}
                  ``error``  {code, reason}
                  ``hello``  {max_fps, max_frame_bytes, labels, members} on connect

Each client may have one frame in flight and at most ``max_fps`` frames per second; a frame breaking
either rule, or any payload that is not one binary image, gets an ``error`` for that client only.
Frame bytes are held in memory for the request and never written anywhere; logs carry no image data.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from flask import current_app, request
from flask_socketio import emit

from .app import socketio
from .inference import InferenceError

log = logging.getLogger("webapp.events")


class ClientGate:
    """One frame in flight, and at most ``max_fps`` accepted frames in any one-second window."""

    def __init__(self):
        self.in_flight = False
        self.accepted: deque = deque()
        self._lock = threading.Lock()

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


REASONS = {
    "busy": "a frame is already being processed: wait for its result before sending the next",
    "rate_limited": "too many frames per second",
    "bad_frame": "expected one binary payload (the JPEG bytes of one frame)",
    "empty": "empty frame",
    "too_large": "frame over the size limit",
    "internal": "the frame could not be processed",
    "unknown_event": "unknown event",
}


def _state():
    return current_app.extensions["fer"]


def _error(code: str, reason: str | None = None) -> None:
    _state().stats.error(code)
    emit("error", {"code": code, "reason": reason or REASONS.get(code, code)})


@socketio.on("connect")
def on_connect(auth=None):
    st = _state()
    st.gates[request.sid] = ClientGate()
    st.stats.connected()
    info = st.inference.info if st.inference is not None else None
    emit("hello", {"max_fps": st.config.max_fps, "max_frame_bytes": st.config.max_frame_bytes,
                   "labels": (info or {}).get("labels"), "members": (info or {}).get("members")})


@socketio.on("disconnect")
def on_disconnect(reason=None):
    st = _state()
    if st.gates.pop(request.sid, None) is not None:
        st.stats.disconnected()


@socketio.on("frame")
def on_frame(*args):
    t0 = time.perf_counter()
    st = _state()
    cfg = st.config
    if len(args) != 1 or not isinstance(args[0], (bytes, bytearray)):
        return _error("bad_frame")
    data = args[0]
    if not data:
        return _error("empty")
    if len(data) > cfg.max_frame_bytes:
        return _error("too_large", f"frame of {len(data)} bytes over the limit of {cfg.max_frame_bytes}")
    gate = st.gates.get(request.sid)
    if gate is None:  # a frame racing its own disconnect
        return _error("internal")
    code = gate.begin(cfg.max_fps)
    if code == "rate_limited":
        return _error(code, f"more than {cfg.max_fps:g} frames per second")
    if code:
        return _error(code)
    try:
        if st.inference is None:
            raise InferenceError("unavailable", "this server runs without an inference worker")
        out = st.inference.infer(bytes(data), timeout=cfg.request_timeout)
    except InferenceError as e:
        return _error(e.code, e.reason)
    except Exception as e:  # noqa: BLE001 - the client gets a reason, the log gets the type only
        log.error("frame failed: %s", type(e).__name__)
        return _error("internal")
    finally:
        gate.end()
    ms = (time.perf_counter() - t0) * 1000
    out["ms"] = round(ms, 1)
    st.stats.frame(ms, len(out["faces"]))
    emit("result", out)


@socketio.on("*")
def on_other(event, *args):
    _error("unknown_event", f"unknown event {str(event)[:40]!r}: send 'frame'")

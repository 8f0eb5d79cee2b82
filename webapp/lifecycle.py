"""A fast, graceful stop (docs/webapp.md, "Stopping"): new frames are refused, the frames in flight
are answered (or failed with 'unavailable'), every client is disconnected and the inference worker
stopped, within about ``shutdown_timeout`` seconds.

Under ``gunicorn -k eventlet`` a SIGTERM only told the worker to stop accepting and to wait up to the
30 s graceful timeout for its connections to end. WebSocket connections never end by themselves, so
every stop took the full 30 s, then the worker was killed: the app's own shutdown never ran and the
frames in flight got no answer. ``install_gunicorn(app)`` chains a handler in front of gunicorn's:
it runs ``shutdown`` in a thread of its own, whose disconnects let gunicorn's wait end at once.
``python -m webapp`` calls ``shutdown`` itself when it stops.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

from . import eventlet_env, transport

log = logging.getLogger("webapp.lifecycle")


def shutdown(app, timeout: float | None = None) -> float:
    """Stop serving ``app`` (idempotent); returns the seconds it took."""
    st = app.extensions["fer"]
    if st.stopping:
        return 0.0
    st.stopping = True
    t0 = time.monotonic()
    timeout = st.config.shutdown_timeout if timeout is None else timeout
    in_flight = sum(1 for g in list(st.gates.values()) if g.in_flight)
    log.info("shutting down: %d clients, %d frames in flight", len(st.gates), in_flight)
    if st.inference is not None:
        # refuses new frames ('unavailable'); the worker answers what it holds, or is killed after timeout
        st.inference.close(timeout)
    if st.explainer is not None:  # a 'why' in flight gets 'unavailable'
        st.explainer.close(timeout)
    end = time.monotonic() + 2.0  # the handlers of those frames now send their answers
    while any(g.in_flight or g.why.in_flight for g in list(st.gates.values())) and time.monotonic() < end:
        time.sleep(0.05)
    sio = app.extensions.get("socketio")
    if sio is not None and getattr(sio, "server", None) is not None:
        try:
            transport.close_all(sio.server)  # every client: the WebSockets close, so the server's wait ends
        except Exception as e:  # noqa: BLE001 - a client that went away meanwhile
            log.debug("disconnecting clients: %s", type(e).__name__)
    took = time.monotonic() - t0
    log.info("shut down in %.1f s", took)
    return took


def _spawn(fn, *args) -> None:
    if eventlet_env.patched("thread"):
        import eventlet
        eventlet.spawn_n(fn, *args)
        return
    threading.Thread(target=fn, args=args, name="fer-shutdown", daemon=True).start()


def install_gunicorn(app) -> bool:
    """In a gunicorn worker (its SIGTERM handler is a gunicorn worker's method), run ``shutdown``
    on SIGTERM before gunicorn's own handler; True if installed."""
    previous = signal.getsignal(signal.SIGTERM)
    owner = getattr(previous, "__self__", None)
    if owner is None or not type(owner).__module__.startswith("gunicorn."):
        return False

    def on_sigterm(signum, frame):
        # Runs between two bytecodes of whatever was active, the eventlet hub included, where nothing
        # may block or switch (a green Thread.start() waits for the thread): only schedule the work.
        _spawn(shutdown, app)
        previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: gunicorn loads the app in it, so this is not gunicorn
        return False
    return True

"""The app factory: ``create_app(config)`` builds one Flask app with its own SocketIO (at
``app.extensions['socketio']``), its socket events (webapp.events), admin pages (webapp.admin),
security headers (webapp.security) and ONE inference worker subprocess (``webapp.worker``, the only
process importing TensorFlow). It returns at once; ``/healthz`` answers 200 when the worker has loaded
and warmed up the ensemble. See webapp/inference.py for why TensorFlow stays out of this process.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, jsonify, render_template
from flask_socketio import SocketIO

from fer_core import store  # numpy only: the web process never imports TensorFlow

from . import admin, eventlet_env, events, guard, lifecycle, logsafe, metrics, security, transport, websocket_mask
from .config import WebConfig
from .classview import ClassView
from .inference import InferenceClient
from .seats import Seats
from .stats import Stats

ROOT = Path(__file__).resolve().parent.parent
# `pip install .` puts templates/ and static/ inside the package (pyproject.toml); a checkout has them at ROOT
PAGES = ROOT if (ROOT / "templates").is_dir() else Path(__file__).resolve().parent
log = logging.getLogger("webapp")


@dataclass
class AppState:
    """What the routes and socket events share, at ``app.extensions['fer']``."""
    config: WebConfig
    models_dir: Path
    inference: InferenceClient | None
    stats: Stats
    admin_limiter: admin.FailureLimiter
    classview: ClassView = field(default_factory=ClassView)  # the teacher's view on /admin (counts only)
    gates: dict = field(default_factory=dict)  # Socket.IO sid -> events.ClientGate
    explainer: InferenceClient | None = None   # Grad-CAM for 'why' requests, started on the first one
    seats: Seats = field(default_factory=Seats)  # over max_clients, clients wait in line (webapp/seats.py)
    stopping: bool = False                     # set by lifecycle.shutdown


def create_app(config: WebConfig | None = None) -> Flask:
    """The Flask app with Socket.IO attached and the inference worker starting.

    ``config`` defaults to ``WebConfig.from_env()`` (FER_MODELS, FER_ADMIN_SECRET, ...)."""
    cfg = config if config is not None else WebConfig.from_env()
    models_dir = store.resolve_models_dir(cfg.models_dir).resolve()
    if not models_dir.is_dir():
        raise store.ModelsError(f"{models_dir}: models folder not found (pass --models DIR or set {store.MODELS_ENV})")
    logsafe.install(logging.INFO)  # one line per event, client text escaped, repeats limited

    app = Flask(__name__, template_folder=str(PAGES / "templates"), static_folder=str(PAGES / "static"))
    inference = InferenceClient(cfg.worker(models_dir)) if cfg.worker_start else None
    explainer = InferenceClient(cfg.explainer(models_dir), role="explain") if cfg.worker_start and cfg.explain else None
    app.extensions["fer"] = AppState(config=cfg, models_dir=models_dir, inference=inference, stats=Stats(),
                                     admin_limiter=admin.FailureLimiter(cfg.admin_max_failures,
                                                                        cfg.admin_failure_window),
                                     classview=ClassView(cfg.class_window, cfg.class_bucket, cfg.class_buckets),
                                     explainer=explainer, seats=Seats(cfg.max_clients))

    async_mode = eventlet_env.async_mode()
    if async_mode == "eventlet":
        websocket_mask.install()  # eventlet unmasks client frames byte by byte in Python: ~2.5 ms per frame
    # One SocketIO per app: its server, options and handlers belong to this app alone.
    # Transport loggers at WARNING: engine.io's packet log (INFO) would otherwise be the one place
    # frame bytes could leak.
    socketio = SocketIO(app, async_mode=async_mode, max_http_buffer_size=cfg.transport_max_bytes,
                        logger=logsafe.transport_logger("socketio"), engineio_logger=logsafe.transport_logger("engineio"),
                        message_queue=cfg.message_queue,
                        cors_allowed_origins=security.origin_policy(cfg.cors_allowed_origins),
                        serializer=transport.FramePacket)
    events.init_app(socketio)
    # -- hostile clients: packet checks, Host allow-list, body limits, proxy trust, SIGTERM --
    transport.harden(socketio.server, on_refused=lambda eio_sid, reason: app.extensions["fer"].stats.error("bad_packet"))
    # ProxyFix (trust_proxy hops) only for trusted peers; a refused polling body ends its session
    app.wsgi_app = guard.wrap(app.wsgi_app, cfg, end_session=lambda sid: socketio.server.eio.disconnect(sid))
    lifecycle.install_gunicorn(app)
    app.register_blueprint(admin.bp)
    metrics.init_app(app)
    security.init_app(app)

    @app.get("/")
    def index():
        return render_template("index.html", max_fps=cfg.max_fps)

    @app.get("/healthz")
    def healthz():
        st = app.extensions["fer"]
        if st.inference is None:
            return jsonify(status="no_worker"), 503
        body = {"status": st.inference.state, "heartbeat_s": st.inference.status()["heartbeat_s"]}
        if st.inference.ready and not st.inference.responsive:
            body["status"] = "unresponsive"  # silent: replaced by the watchdog at the heartbeat bound, later
            return jsonify(body), 503
        if st.inference.ready:
            body.update(members=st.inference.info.get("members"), labels=st.inference.info.get("labels"),
                        runtime=st.inference.info.get("runtime_choice"))  # what serves, the timings that chose it
            return jsonify(body), 200
        return jsonify(body), 503

    if inference is not None:
        inference.start()
    log.info("models %s, async mode %s, frame limit %d bytes, %g frames/s per client%s",
             models_dir, async_mode, cfg.max_frame_bytes, cfg.max_fps,
             ", message queue " + security.redact(cfg.message_queue) if cfg.message_queue else "")
    return app

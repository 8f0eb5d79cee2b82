"""The app factory and the module-level ``socketio`` (re-exported by ``webapp``).

``create_app`` starts ONE inference worker subprocess (``webapp.worker``, the only process importing
TensorFlow) and returns at once; ``/healthz`` answers 200 when the worker has loaded and warmed up the
ensemble. See webapp/inference.py for why TensorFlow stays out of this process.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from flask_socketio import SocketIO

from .config import WebConfig

ROOT = Path(__file__).resolve().parent.parent
socketio = SocketIO()
log = logging.getLogger("webapp")
# Handlers must be registered before the first init_app: Flask-SocketIO keeps only handlers declared
# while it has no server, and binds those to the server of every later init_app (each create_app).
from . import events  # noqa: E402,F401


@dataclass
class AppState:
    """What the routes and socket events share, at ``app.extensions['fer']``."""
    config: WebConfig
    models_dir: Path
    inference: object | None
    stats: object
    admin_limiter: object = None
    gates: dict = field(default_factory=dict)


def _eventlet_patched() -> bool:
    if "eventlet" not in sys.modules:
        return False
    from eventlet import patcher
    return patcher.is_monkey_patched("socket")


class _NoPayloadInTracebacks(logging.Filter):
    """For the transport's loggers (and gunicorn's 'Error handling request'): an exception raised
    while decoding a client's packet is logged as its type and where it was raised, in one line.
    Hostile packets (bad JSON, bad attachments, garbage) end only their own connection, and their
    exception messages, which can quote what the client sent, never reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            etype, _, tb = record.exc_info
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""
            record.msg = f"{record.getMessage()} ({etype.__name__}{where}; the connection was closed)"
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


def _quiet_transport_logs() -> None:
    f = _NoPayloadInTracebacks()
    for name in ("engineio.server", "socketio.server", "gunicorn.error"):
        lg = logging.getLogger(name)
        if not any(isinstance(x, _NoPayloadInTracebacks) for x in lg.filters):
            lg.addFilter(f)


def _security_headers(resp):
    # Everything the pages use comes from this server: no CDN, no external font, no inline script.
    host = request.host
    resp.headers.setdefault("Content-Security-Policy", (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob: mediastream:; connect-src 'self' ws://{host} wss://{host}; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"))
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("Permissions-Policy", "camera=(self), microphone=()")
    return resp


def _redact(url: str) -> str:
    """A queue URL for the log, without its password."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    if u.password:
        return url.replace(u.password, "***", 1)
    return url


def create_app(config: WebConfig | None = None) -> Flask:
    """The Flask app with Socket.IO attached and the inference worker starting.

    ``config`` defaults to ``WebConfig.from_env()`` (FER_MODELS, FER_ADMIN_SECRET, ...)."""
    from fer_core import store  # numpy only: the web process never imports TensorFlow
    from .admin import FailureLimiter
    from .inference import InferenceClient
    from .stats import Stats

    cfg = config if config is not None else WebConfig.from_env()
    models_dir = store.resolve_models_dir(cfg.models_dir).resolve()
    if not models_dir.is_dir():
        raise store.ModelsError(f"{models_dir}: models folder not found (pass --models DIR or set FER_MODELS)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_transport_logs()

    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    inference = None
    if cfg.worker_start:
        inference = InferenceClient(models_dir, max_batch=cfg.max_batch, max_faces=cfg.max_faces,
                                    max_pixels=cfg.max_pixels, warm_up=cfg.warm_up_faces,
                                    start_timeout=cfg.worker_start_timeout,
                                    batch_timeout=cfg.worker_batch_timeout, tta=cfg.tta,
                                    tf_threads=cfg.tf_threads, track_every=cfg.track_every,
                                    runtime=cfg.runtime, precision=cfg.precision, prep_chunks=cfg.prep_chunks)
    app.extensions["fer"] = AppState(config=cfg, models_dir=models_dir, inference=inference, stats=Stats(),
                                     admin_limiter=FailureLimiter(cfg.admin_max_failures, cfg.admin_failure_window))

    async_mode = cfg.async_mode or ("eventlet" if _eventlet_patched() else "threading")
    if async_mode == "eventlet":
        from . import wsmask
        wsmask.install()  # eventlet unmasks client frames byte by byte in Python: ~2.5 ms per frame
    # Loggers off: engine.io's packet log would otherwise be the one place frame bytes could leak.
    # message_queue and cors_allowed_origins are passed every time (None included) and a previous
    # call's queue dropped: Flask-SocketIO keeps the options of earlier init_app calls otherwise.
    socketio.server_options.pop("client_manager", None)
    socketio.init_app(app, async_mode=async_mode, max_http_buffer_size=cfg.transport_max_bytes,
                      logger=False, engineio_logger=False, message_queue=cfg.message_queue,
                      cors_allowed_origins=cfg.cors_allowed_origins)
    if cfg.trust_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=cfg.trust_proxy, x_proto=cfg.trust_proxy,
                                x_host=cfg.trust_proxy)

    from .admin import bp as admin_bp
    app.register_blueprint(admin_bp)
    app.after_request(_security_headers)

    @app.get("/")
    def index():
        return render_template("index.html", max_fps=cfg.max_fps)

    @app.get("/healthz")
    def healthz():
        st = app.extensions["fer"]
        if st.inference is None:
            return jsonify(status="no_worker"), 503
        body = {"status": st.inference.state}
        if st.inference.ready:
            body.update(members=st.inference.info.get("members"), labels=st.inference.info.get("labels"))
            return jsonify(body), 200
        return jsonify(body), 503

    if inference is not None:
        inference.start()
    log.info("models %s, async mode %s, frame limit %d bytes, %g frames/s per client%s",
             models_dir, async_mode, cfg.max_frame_bytes, cfg.max_fps,
             ", message queue " + _redact(cfg.message_queue) if cfg.message_queue else "")
    return app



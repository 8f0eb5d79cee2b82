"""What the server says besides its answers: the headers of every response, and log lines that never
quote what a client sent (a frame, a hostile packet) nor a password.

``init_app(app)`` adds the headers to an app; ``init_logging()`` sets up the process's logging once,
however many apps it creates; ``redact(url)`` is a URL fit for the log.
"""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from flask import request

# The transport's loggers (and gunicorn's 'Error handling request'), where a client's packet can end up.
TRANSPORT_LOGGERS = ("engineio.server", "socketio.server", "gunicorn.error")


class _NoPayloadInTracebacks(logging.Filter):
    """An exception raised while decoding a client's packet is logged as its type and where it was
    raised, in one line. Hostile packets (bad JSON, bad attachments, garbage) end only their own
    connection, and their exception messages, which can quote what the client sent, never reach the log."""

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


def init_logging() -> None:
    """INFO to stderr with times (a no-op where the process set up logging already, as gunicorn does),
    and the transport's loggers filtered (once per logger)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in TRANSPORT_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(x, _NoPayloadInTracebacks) for x in lg.filters):
            lg.addFilter(_NoPayloadInTracebacks())


def _headers(resp):
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


def init_app(app) -> None:
    """The security headers on every response of ``app``."""
    app.after_request(_headers)


def redact(url: str) -> str:
    """A URL (the message queue's) for the log, without its password."""
    u = urlsplit(url)
    if u.password:
        return url.replace(u.password, "***", 1)
    return url

"""What the server says besides its answers: the headers of every response, and URLs fit for the
log (the log lines themselves follow webapp/logsafe.py).

``init_app(app)`` adds the headers to an app; ``redact(url)`` is a URL fit for the log.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import request


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

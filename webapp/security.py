"""What the server says besides its answers: the headers of every response, and URLs fit for the
log (the log lines themselves follow webapp/logsafe.py).

``init_app(app)`` adds the headers to an app; ``origin_policy(allowed)`` is the Socket.IO handshake's
Origin check; ``redact(url)`` is a URL fit for the log.
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


def origin_policy(allowed):
    """Socket.IO's ``cors_allowed_origins`` for ``allowed`` (``WebConfig.cors_allowed_origins``: None,
    '*' or a list): '*' as it is, else a check that admits the listed origins and this server's own,
    as the request's scheme and Host say it. Those are rewritten from ``X-Forwarded-*`` only for a
    trusted proxy (webapp.guard.ProxyTrust, ``FER_TRUST_PROXY``): python-engineio's own same-origin
    rule also admitted the origin named by whatever ``X-Forwarded-Host``/``-Proto`` a client sent."""
    if allowed == "*":
        return "*"
    listed = frozenset(allowed or ())

    def allowed_origin(origin, environ=None) -> bool:
        if origin in listed:
            return True
        environ = environ or {}
        scheme, host = environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST")
        return bool(scheme and host) and origin == f"{scheme}://{host}"

    return allowed_origin


def redact(url: str) -> str:
    """A URL (the message queue's) for the log, without its password."""
    u = urlsplit(url)
    if u.password:
        return url.replace(u.password, "***", 1)
    return url

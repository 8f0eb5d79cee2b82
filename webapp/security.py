"""What the server says besides its answers: the headers of every response, and URLs fit for the
log (the log lines themselves follow webapp/logsafe.py).

``init_app(app)`` adds the headers to every response of an app (a WSGI middleware); ``origin_policy(allowed)`` is the Socket.IO handshake's
Origin check; ``redact(url)`` is a URL fit for the log.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


def headers(host: str | None) -> list[tuple[str, str]]:
    """The security headers of a response to a request for ``host`` (its Host header)."""
    # Everything the pages use comes from this server: no CDN, no external font, no inline script.
    # The WebSocket is named by host: a Host that is no host name (only '*' in FER_ALLOWED_HOSTS lets
    # one through) adds nothing to the policy.
    ws = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return [("Content-Security-Policy",
             "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
             f"media-src 'self' blob: mediastream:; connect-src 'self'{ws}; "
             "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Permissions-Policy", "camera=(self), microphone=()")]


class SecureHeaders:
    """WSGI middleware, outermost: every response gets ``headers`` (a header the response sets
    itself is kept): the app's pages, Engine.IO's polling replies and webapp.guard's refusals
    alike, which a Flask ``after_request`` never sees."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        def start(status, response_headers, exc_info=None):
            have = {k.lower() for k, _ in response_headers}
            # read now, not before: a trusted proxy's Host has been applied to environ by then
            extra = [(k, v) for k, v in headers(environ.get("HTTP_HOST")) if k.lower() not in have]
            return start_response(status, list(response_headers) + extra, exc_info)
        return self.app(environ, start)


def init_app(app) -> None:
    """The security headers on every response of ``app``: call it last, after every other WSGI
    middleware is in place."""
    app.wsgi_app = SecureHeaders(app.wsgi_app)


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

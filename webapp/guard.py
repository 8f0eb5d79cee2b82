"""WSGI middleware that stands between hostile clients and the app (docs/protocol.md, "Limits").

``wrap(wsgi_app, config)`` returns ``ProxyTrust(RequestGuard(wsgi_app))``:

* ``ProxyTrust`` applies Werkzeug's ``ProxyFix`` (``trust_proxy`` hops of ``X-Forwarded-*``) only to
  requests whose direct peer is a trusted proxy (``trusted_proxies``, loopback by default). Without
  that, a client talking to the server directly chose its own address by sending
  ``X-Forwarded-For``, escaping the admin lockout and writing any address into the log.
* ``RequestGuard`` refuses a Host header that is not this server's (DNS rebinding: a page on
  ``evil.example`` whose name now resolves to this server would otherwise pass the same-origin check
  and count as localhost), and refuses a Socket.IO long-polling body before Engine.IO reads it: no
  Content-Length, chunked, over the transport's limit (413), or not arriving within
  ``body_timeout`` seconds (408). python-engineio 4.15.1 answers an oversize POST by closing the
  session with ``Socket.close(wait=True)``, which waits for a poll that a vanished client never
  sends: the request's green thread parked for good (the same hang as python-engineio PR #60).
  A refused body also ends the polling session it was posted to (``end_session``): left open, it
  held its client's seat (webapp/seats.py) until the ping timeout, 45 s, so a hundred stalled
  bodies kept a class of 60 in line.
  It also routes ``wsgi.errors`` into the log (``logsafe.ErrorStream``).
"""
from __future__ import annotations

import io
import ipaddress
import logging
import re
from urllib.parse import parse_qs

from . import eventlet_env, logsafe

log = logging.getLogger("webapp.guard")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
BODY_TIMEOUT = 10.0  # seconds for a long-polling POST body: a page sends it at once
READ_CHUNK = 16_384  # bytes asked of the server's input at a time (see RequestGuard._read_body)
_NAME = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$")


def parse_hosts(spec: str | None) -> tuple[frozenset, bool]:
    """``FER_ALLOWED_HOSTS`` -> (set of (host, port or None), allow any). Entries: ``name``,
    ``name:port``, ``[v6]``, ``[v6]:port``, or ``*`` (any Host)."""
    hosts, any_host = set(), False
    for raw in (spec or "").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            any_host = True
            continue
        name, port = split_host(entry)
        if not _NAME.match(name) or (port is not None and not port.isdigit()):
            raise ValueError(f"allowed_hosts: {raw.strip()!r} is not a host name, host:port or *")
        hosts.add((name, port))
    return frozenset(hosts), any_host


def split_host(host: str) -> tuple[str, str | None]:
    """'Example.org:8443' -> ('example.org', '8443'); '[::1]:5000' -> ('[::1]', '5000')."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        name, rest = host[:end + 1], host[end + 1:]
        return name, (rest[1:] if rest.startswith(":") else None)
    name, sep, port = host.rpartition(":")
    if not sep:
        return host.rstrip("."), None
    return name.rstrip("."), port


def parse_networks(spec: str | None) -> tuple:
    """``FER_TRUSTED_PROXIES`` ('127.0.0.1/8,::1,10.0.0.2') -> ip networks; ValueError names the entry."""
    nets = []
    for raw in (spec or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from None
    return tuple(nets)


LOOPBACK = parse_networks("127.0.0.0/8,::1")


def peer_in(addr: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").split("%")[0])
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


class RequestGuard:
    def __init__(self, app, allowed_hosts: str | None = None, max_body: int = 2_004_096,
                 body_timeout: float = BODY_TIMEOUT, path: str = "/socket.io/", end_session=None):
        if max_body < 1 or body_timeout <= 0:
            raise ValueError(f"max_body and body_timeout must be positive, got {max_body!r}, {body_timeout!r}")
        self.app, self.max_body, self.body_timeout, self.path = app, max_body, body_timeout, path
        self.end_session = end_session  # end_session(engine.io sid), once a session's body is refused
        self.hosts, self.any_host = parse_hosts(allowed_hosts)
        self.errors = logsafe.ErrorStream(logging.getLogger("webapp.wsgi"))

    def host_allowed(self, environ) -> bool:
        host = environ.get("HTTP_HOST")
        if self.any_host or host is None:  # no Host (HTTP/1.0): no name a page could have rebound
            return True
        name, port = split_host(host)
        server_port = str(environ.get("SERVER_PORT", ""))
        if (name, port) in self.hosts or (name, None) in self.hosts:
            return True
        if name in LOOPBACK_NAMES:
            default = DEFAULT_PORTS.get(environ.get("wsgi.url_scheme", "http"))
            return port == server_port or (port is None and server_port == default)
        return False

    def __call__(self, environ, start_response):
        environ["wsgi.errors"] = self.errors
        if not self.host_allowed(environ):
            log.warning("refused a request for host %s from %s: not an allowed host (FER_ALLOWED_HOSTS)",
                        logsafe.clean(environ.get("HTTP_HOST"), 100), environ.get("REMOTE_ADDR"))
            return _answer(start_response, "400 Bad Request",
                           "This server does not serve that host name (see FER_ALLOWED_HOSTS).")
        if environ.get("PATH_INFO", "").startswith(self.path) and environ.get("REQUEST_METHOD") == "POST":
            refused = self._read_body(environ)
            if refused:
                self._end(environ)
                return _answer(start_response, *refused)
        return self.app(environ, start_response)

    def _end(self, environ) -> None:
        """Ends the session a refused body was posted to: a page never sends such a body."""
        sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
        if sid is None or self.end_session is None:
            return
        try:
            self.end_session(sid)
        except Exception as e:  # noqa: BLE001 - an unknown or closed sid: nothing to end
            log.debug("ending the session of a refused body: %s", type(e).__name__)

    def _read_body(self, environ):
        """Reads the POST body into memory (bounded in size and time); an error answer, or None.

        In chunks of READ_CHUNK: gunicorn's input gathers a read's bytes in a buffer of its own, and
        when the deadline cuts a read short, what it gathered stays there. On a keep-alive connection
        gunicorn then discards the rest of the body 1 kB at a time, copying the whole buffer for
        each kB without yielding: a body stalled at 1.9 MB of 2 MB, read in one call, cost ~4 GB of
        copying and froze every client of the worker for seconds. One chunk left there costs nothing."""
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return "411 Length Required", "Send the body with a Content-Length."
        try:
            n = int(environ.get("CONTENT_LENGTH") or "0")
        except ValueError:
            return "400 Bad Request", "Malformed Content-Length."
        if n < 0:
            return "400 Bad Request", "Malformed Content-Length."
        if n > self.max_body:
            log.warning("refused a long-polling body of %d bytes from %s (limit %d)", n,
                        environ.get("REMOTE_ADDR"), self.max_body)
            return "413 Content Too Large", f"Body over {self.max_body} bytes."
        stream, parts, got = environ["wsgi.input"], [], 0
        try:
            with _deadline(self.body_timeout) as deadline:
                while got < n:
                    chunk = stream.read(min(READ_CHUNK, n - got))
                    if not chunk:
                        break
                    parts.append(chunk)
                    got += len(chunk)
                    deadline.pause()
        except _Timeout:
            log.warning("a long-polling body from %s did not arrive within %g s", environ.get("REMOTE_ADDR"),
                        self.body_timeout)
            return "408 Request Timeout", "The body did not arrive in time."
        if got < n:
            return "400 Bad Request", "The body ended early."
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        return None


class _Timeout(Exception):
    pass


class _deadline:
    """Under eventlet, a green timeout around a block (raised as _Timeout); elsewhere (threads, the
    test client) nothing: those servers bound their reads themselves or read from memory."""

    def __init__(self, seconds: float):
        self.seconds, self.t = seconds, None

    def __enter__(self):
        if eventlet_env.patched():
            import eventlet
            self.t = eventlet.Timeout(self.seconds, _Timeout)
        return self

    def pause(self) -> None:
        """Let the other green threads run. A read of bytes already received never blocks, so it
        never yields: without this, 100 bodies arriving at once (gunicorn reads them 1 kB at a time,
        ~10 us each) held every other client back for a second."""
        if self.t is not None:
            import eventlet
            eventlet.sleep(0)

    def __exit__(self, *exc):
        if self.t is not None:
            self.t.cancel()
        return False


def _answer(start_response, status: str, text: str):
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


class ProxyTrust:
    def __init__(self, app, hops: int = 0, trusted: str | None = "127.0.0.0/8,::1"):
        if hops < 0:
            raise ValueError(f"hops must be >= 0, got {hops!r}")
        self.direct, self.hops, self.trusted = app, hops, parse_networks(trusted)
        self.proxied = None
        if hops:
            from werkzeug.middleware.proxy_fix import ProxyFix
            self.proxied = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops)

    def __call__(self, environ, start_response):
        if self.proxied is not None and peer_in(environ.get("REMOTE_ADDR"), self.trusted):
            return self.proxied(environ, start_response)
        return self.direct(environ, start_response)


def wrap(wsgi_app, cfg, end_session=None):
    """The app's WSGI callable behind both guards, set up from a WebConfig; ``end_session(sid)``
    closes the Engine.IO session whose long-polling body was refused."""
    return ProxyTrust(RequestGuard(wsgi_app, allowed_hosts=cfg.allowed_hosts, max_body=cfg.transport_max_bytes,
                                   end_session=end_session),
                      hops=cfg.trust_proxy, trusted=cfg.trusted_proxies)

"""The admin page: accuracy tables from the models folder's metrics.json, pictures, live numbers.

Access: from localhost (``is_local``: a loopback peer naming a loopback Host, no forwarding header) it is
open; from anywhere else it needs HTTP Basic auth whose password is the secret set at start (FER_ADMIN_SECRET; any user name).
Without a configured secret, remote access is refused (403). A wrong or missing password gets 401;
an address with ``admin_max_failures`` wrong passwords within ``admin_failure_window`` seconds gets
429 with Retry-After (right password or not) until the oldest of them ages out.
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from functools import wraps

from flask import Blueprint, abort, current_app, jsonify, render_template, request, send_file

from fer_core import store
from fer_core.metrics import report_tables
from fer_core.tta import of as tta_of
from .guard import LOOPBACK, LOOPBACK_NAMES, peer_in, split_host

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("webapp.admin")

TOP_FILES = {"confusion.png": "image/png", "report.md": "text/markdown; charset=utf-8",
             "metrics.json": "application/json", "campaign.png": "image/png",
             "campaign.csv": "text/csv; charset=utf-8"}
MEMBER_FILES = {"curve.png": "image/png", "log.csv": "text/csv; charset=utf-8",
                "member.json": "application/json"}
MISSING = "missing"  # the notice for a models folder without metrics.json (worded in the template)
_NAME = store.MEMBER_NAME  # a member's folder: a plain name, never a path
# Headers some proxy or TLS terminator adds (WSGI environ names: '-' and '_' read the same there).
_FORWARDING_PREFIXES = ("HTTP_X_FORWARDED_", "HTTP_X_ORIGINAL_")
_FORWARDING = frozenset({"HTTP_FORWARDED", "HTTP_VIA", "HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP", "HTTP_TRUE_CLIENT_IP",
                         "HTTP_CF_CONNECTING_IP", "HTTP_X_CLUSTER_CLIENT_IP", "HTTP_FRONT_END_HTTPS",
                         "HTTP_X_URL_SCHEME", "HTTP_X_SCHEME", "HTTP_X_HTTPS", "HTTP_X_FORWARDED"})


def _state():
    return current_app.extensions["fer"]


class FailureLimiter:
    """Failed password attempts per client address in a sliding window. Memory is bounded: at most
    ``max_addresses`` addresses are tracked (the least recently failing one is forgotten first)."""

    def __init__(self, max_failures: int = 10, window: float = 300.0, max_addresses: int = 10_000):
        self.max_failures, self.window, self.max_addresses = max_failures, window, max_addresses
        self._fails: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque | None:
        q = self._fails.get(key)
        if q is not None:
            while q and q[0] <= now - self.window:
                q.popleft()
            if not q:
                del self._fails[key]
                return None
        return q

    def retry_after(self, key: str, now: float | None = None) -> int:
        """Seconds until ``key`` may try again; 0: it may now."""
        if not self.max_failures:
            return 0
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(key, now)
            if q is None or len(q) < self.max_failures:
                return 0
            return max(1, math.ceil(q[-self.max_failures] + self.window - now))

    def fail(self, key: str, now: float | None = None) -> None:
        if not self.max_failures:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(key, now)
            if q is None:
                q = self._fails[key] = deque(maxlen=self.max_failures)
            q.append(now)
            self._fails.move_to_end(key)
            while len(self._fails) > self.max_addresses:
                self._fails.popitem(last=False)

    def succeed(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


def forwarded(environ) -> bool:
    """Whether the request carries any header a proxy adds (``X-Forwarded-*`` of any kind, ``Forwarded``,
    ``Via``, ``X-Real-IP``, ...)."""
    return any(k in _FORWARDING or k.startswith(_FORWARDING_PREFIXES) for k in environ)


def is_local(environ) -> bool:
    """A request from a browser on this host: a loopback peer, a loopback name in Host, and no
    forwarding header. A proxy or TLS terminator on this host connects from loopback too: one that
    adds a forwarding header, or passes on its clients' Host (the server's public name), makes its
    requests remote. One that does neither cannot be told apart: docs/webapp.md says to set
    FER_ADMIN_LOCAL_OPEN=0 there. Headers spelt with '_' never reach the app (eventlet and gunicorn
    drop them), so they cannot count."""
    if forwarded(environ):
        return False
    name, _ = split_host(environ.get("HTTP_HOST") or "")
    return name in LOOPBACK_NAMES and peer_in(environ.get("REMOTE_ADDR"), LOOPBACK)


def _denied(status: int, message: str):
    resp = jsonify(error=message) if request.path.endswith("/stats") else current_app.response_class(
        message + "\n", mimetype="text/plain")
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="FER admin", charset="UTF-8"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def require_admin(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        cfg = _state().config
        if not (cfg.admin_local_open and is_local(request.environ)):
            secret = cfg.admin_secret
            if not secret:
                return _denied(403, "The admin page is only served on localhost: start the server with "
                                    "FER_ADMIN_SECRET set to open it from elsewhere.")
            limiter = _state().admin_limiter
            peer = str(request.remote_addr or "?")
            wait = limiter.retry_after(peer)
            if wait:
                resp = _denied(429, f"Too many wrong admin passwords from this address: try again in {wait} s.")
                resp.headers["Retry-After"] = str(wait)
                return resp
            auth = request.authorization
            given = (auth.password or "") if auth is not None and auth.type == "basic" else ""
            if not hmac.compare_digest(given.encode(), secret.encode()):
                if auth is not None:  # a browser's first request carries no password: not a failure
                    limiter.fail(peer)
                    log.warning("wrong admin password from %s", peer[:64])
                return _denied(401, "Admin secret required (HTTP Basic auth, any user name).")
            limiter.succeed(peer)
        resp = current_app.make_response(view(*args, **kwargs))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return wrapped


def load_metrics(models_dir):
    """(metrics dict or None, notice or None)."""
    path = models_dir / "metrics.json"
    if not path.is_file():
        return None, MISSING
    try:
        m = json.loads(path.read_text())
        if not isinstance(m, dict) or not isinstance(m.get("members"), dict):
            raise ValueError("no 'members' table")
        return m, None
    except (ValueError, OSError) as e:
        return None, f"metrics.json could not be read ({type(e).__name__}: {e})."


def _member_names(models_dir, metrics) -> list[str]:
    names = list(((metrics or {}).get("member_info") or {}).keys())
    for n in store.list_members(models_dir):
        if n not in names:
            names.append(n)
    return [n for n in names if _NAME.match(n)]


@bp.get("")
@bp.get("/")
@require_admin
def page():
    st = _state()
    md = st.models_dir
    metrics, notice = load_metrics(md)
    tables, info, chosen = [], {}, None
    if metrics is not None:
        try:
            tables = report_tables(metrics)
            info = metrics.get("member_info") or {}
            chosen = metrics.get("chosen")
        except Exception as e:  # noqa: BLE001 - a damaged file gets a notice, not a 500
            tables, notice = [], f"metrics.json has an unexpected shape ({type(e).__name__}: {e})."
    if chosen is None and (md / "ensemble.json").is_file():
        try:
            chosen = json.loads((md / "ensemble.json").read_text())
        except ValueError:
            chosen = None
    if isinstance(chosen, dict):
        try:  # the views as one mode name, whichever way the file spells them
            chosen = dict(chosen, tta=tta_of(chosen))
        except ValueError:
            pass  # a damaged value is shown as it stands
    members = _member_names(md, metrics)
    curves = [n for n in members if (md / n / "curve.png").is_file()]
    return render_template("admin.html", tables=tables, notice=notice, info=info, chosen=chosen,
                           members=members, curves=curves, has_confusion=(md / "confusion.png").is_file(),
                           has_campaign=(md / "campaign.png").is_file(),
                           has_report=(md / "report.md").is_file(), metrics=metrics, models_name=md.name,
                           worker=st.inference.status() if st.inference is not None else None,
                           seats=st.seats.snapshot())


@bp.get("/stats")
@require_admin
def stats():
    st = _state()
    body = st.stats.snapshot()
    body["worker"] = st.inference.status() if st.inference is not None else None
    info = (st.inference.info if st.inference is not None else None) or {}
    body["seats"] = st.seats.snapshot()  # over capacity: how many wait in line (webapp/seats.py)
    body["class"] = st.classview.snapshot(info.get("labels") or ())  # counts per label only (webapp/classview.py)
    return jsonify(body)


@bp.get("/files/<name>")
@require_admin
def top_file(name):
    if name not in TOP_FILES:
        abort(404)
    path = _state().models_dir / name
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype=TOP_FILES[name], max_age=0)


@bp.get("/members/<member>/<name>")
@require_admin
def member_file(member, name):
    md = _state().models_dir
    if name not in MEMBER_FILES or not _NAME.match(member) or member not in _member_names(md, load_metrics(md)[0]):
        abort(404)
    path = md / member / name
    if not path.is_file() or path.resolve().parent != (md / member).resolve():
        abort(404)
    return send_file(path, mimetype=MEMBER_FILES[name], max_age=0)

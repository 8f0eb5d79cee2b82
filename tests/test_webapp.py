"""The web app over HTTP: pages, static files, admin access and tables, settings, and the pieces of
the inference plumbing that need no worker (wire format, per-client gate, latency histogram)."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.server import ROOT

REMOTE = {"REMOTE_ADDR": "10.1.2.3"}


def make_app(models_dir, **kw):
    from webapp import WebConfig, create_app
    kw.setdefault("worker_start", False)
    return create_app(WebConfig(models_dir=str(models_dir), **kw))


def basic(password: str, user: str = "admin") -> dict:
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def app(tiny_models):
    return make_app(tiny_models, admin_secret="s3cret-Ω")


@pytest.fixture(scope="module")
def models_with_metrics(tiny_models, tmp_path_factory):
    """A copy of the tiny models folder with a real metrics.json (fer_core.metrics on random
    predictions), report.md and confusion.png (fer_core.evaluate.write_metrics), and one curve.png."""
    from conftest import write_random_metrics

    md = tmp_path_factory.mktemp("with_metrics") / "models"
    shutil.copytree(tiny_models, md)
    names = write_random_metrics(md)
    import cv2
    ok, png = cv2.imencode(".png", np.full((24, 64, 3), 200, np.uint8))
    (md / names[0] / "curve.png").write_bytes(png.tobytes())
    return md


# -- pages and static files ------------------------------------------------------------------------

def test_index_page(app):
    r = app.test_client().get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "processed in memory and never stored" in html
    assert not re.search(r"https?://", html), "the page must not load anything from elsewhere"
    assert '/static/vendor/socket.io.min.js' in html and '/static/app.js' in html
    assert '/static/icons.js' in html and '/static/timeline.js' in html and '/static/canvas.js' in html
    assert '<canvas id="timeline"' in html and 'id="csv"' in html
    # the icons are drawn, not typed: no emoji in the page (Debian's Chromium lacks some of them)
    assert not re.search("[\U0001F300-\U0001FAFF]", html)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


def test_page_assets_are_local(app):
    """The page's own script and style name no other host (app.js only mentions "https://" and
    "http://localhost" in its secure-context message; icons.js names the SVG namespace, an
    identifier that is never fetched)."""
    c = app.test_client()
    for path in ("/static/app.js", "/static/style.css", "/static/admin.js", "/static/icons.js", "/static/timeline.js", "/static/canvas.js"):
        r = c.get(path)
        assert r.status_code == 200, path
        text = r.get_data(as_text=True).replace("'http://www.w3.org/2000/svg'", "''")
        assert not re.search("[\U0001F300-\U0001FAFF]", text), path  # no emoji: icons.js draws them
        assert not re.search(r"(https?:|wss?:)?//[\w-]+\.[\w.-]+", text), path
        assert "@import" not in text and "url(" not in text, path


def test_socketio_client_is_served(app):
    r = app.test_client().get("/static/vendor/socket.io.min.js")
    assert r.status_code == 200
    head = r.get_data()[:200].decode()
    assert "Socket.IO v4." in head
    assert (ROOT / "static" / "vendor" / "socket.io-client.LICENSE").is_file()


def test_healthz_without_worker(app):
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.get_json()["status"] == "no_worker"


def test_two_apps_in_one_process_serve_their_own_clients(tiny_models):
    """Each app has its own SocketIO: its clients get its limits, and a client breaking the protocol is
    disconnected by its own app's server, though another app was created after it."""
    a = make_app(tiny_models, max_fps=5, max_frame_bytes=1000, max_violations=1)
    b = make_app(tiny_models, max_fps=7)
    assert a.extensions["socketio"] is not b.extensions["socketio"]
    ca, cb = a.extensions["socketio"].test_client(a), b.extensions["socketio"].test_client(b)
    assert [e["args"][0]["max_fps"] for e in ca.get_received() + cb.get_received()] == [5, 7]
    for _ in range(2):
        ca.emit("frame", b"\xff" * 1001)
    assert not ca.is_connected() and cb.is_connected()
    assert [(e["name"], e["args"][0]["code"]) for e in ca.queue] == [("error", "too_large")] * 2 + [("error", "abuse")]
    assert a.extensions["fer"].stats.snapshot()["errors"] == {"too_large": 2, "abuse": 1}
    assert b.extensions["fer"].stats.snapshot()["errors"] == {}
    cb.emit("frame", b"\xff" * 1001)  # within b's limit: answered (b runs without a worker)
    assert [(e["name"], e["args"][0]["code"]) for e in cb.get_received()] == [("error", "unavailable")]
    cb.disconnect()


def test_missing_models_folder_is_refused(tmp_path):
    from fer_core.store import ModelsError
    with pytest.raises(ModelsError, match="not found"):
        make_app(tmp_path / "nowhere")


# -- admin access ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin", "/admin/stats"])
def test_admin_local_is_open(app, path):
    r = app.test_client().get(path)  # the test client's REMOTE_ADDR is 127.0.0.1
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/admin", "/admin/", "/admin/stats", "/admin/files/report.md"])
def test_admin_remote_needs_the_secret(app, path):
    c = app.test_client()
    r = c.get(path, environ_base=REMOTE)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert "Chosen ensemble" not in r.get_data(as_text=True)
    assert c.get(path, environ_base=REMOTE, headers=basic("wrong")).status_code == 401
    assert c.get(path, environ_base=REMOTE, headers=basic("")).status_code == 401
    assert c.get(path, environ_base=REMOTE, headers={"Authorization": "Bearer s3cret-Ω"}).status_code == 401
    ok = c.get(path, environ_base=REMOTE, headers=basic("s3cret-Ω"))
    assert ok.status_code == (404 if path.endswith("report.md") else 200)  # the fixture has no report.md


def test_admin_page_content_only_with_the_secret(app):
    r = app.test_client().get("/admin", environ_base=REMOTE, headers=basic("s3cret-Ω"))
    assert "Chosen ensemble" in r.get_data(as_text=True)


def test_admin_through_a_local_proxy_is_remote(app):
    """A reverse proxy on the same host connects from 127.0.0.1: its forwarding headers make it remote."""
    c = app.test_client()
    assert c.get("/admin", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    assert c.get("/admin", headers={"X-Forwarded-For": "203.0.113.9", **basic("s3cret-Ω")}).status_code == 200


@pytest.mark.parametrize("header", ["X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X_Forwarded_For",
                                    "Forwarded", "Via", "X-Real-IP", "X-Original-Forwarded-For"])
def test_admin_with_any_forwarding_header_is_remote(app, header):
    """From 127.0.0.1 with only X-Forwarded-Proto (a TLS terminator's one header) the request counted
    as local: only X-Forwarded-For, X-Real-IP, Forwarded and X-Forwarded-Host made it remote."""
    c = app.test_client()
    assert c.get("/admin", headers={header: "https"}).status_code == 401, header
    assert c.get("/admin", headers={header: "https", **basic("s3cret-Ω")}).status_code == 200


def test_admin_local_needs_a_loopback_host(tiny_models):
    """A relay on this host that adds no header passes its clients' Host (the server's public name) on."""
    c = make_app(tiny_models, admin_secret="x", allowed_hosts="classroom.example").test_client()
    assert c.get("/admin", headers={"Host": "classroom.example"}).status_code == 401
    assert c.get("/admin", headers={"Host": "classroom.example", **basic("x")}).status_code == 200
    assert c.get("/admin", headers={"Host": "127.0.0.1"}).status_code == 200


def test_admin_ipv6_loopback_is_local(app):
    assert app.test_client().get("/admin", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_admin_without_configured_secret_refuses_remote(tiny_models):
    app = make_app(tiny_models)
    c = app.test_client()
    assert c.get("/admin").status_code == 200
    r = c.get("/admin", environ_base=REMOTE, headers=basic("anything"))
    assert r.status_code == 403
    assert "FER_ADMIN_SECRET" in r.get_data(as_text=True)
    assert c.get("/admin/stats", environ_base=REMOTE).status_code == 403


def test_admin_local_can_be_closed(tiny_models):
    app = make_app(tiny_models, admin_secret="x", admin_local_open=False)
    c = app.test_client()
    assert c.get("/admin").status_code == 401
    assert c.get("/admin", headers=basic("x")).status_code == 200


# -- admin content -----------------------------------------------------------------------------------

def test_admin_without_metrics_shows_a_notice(app):
    r = app.test_client().get("/admin")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "No accuracy tables yet" in html and "metrics.json" in html
    assert "<table" not in html
    assert "class_recall" in html  # the chosen rule still shows, from ensemble.json


def test_admin_tables_from_metrics(models_with_metrics):
    m = json.loads((models_with_metrics / "metrics.json").read_text())
    app = make_app(models_with_metrics)
    html = app.test_client().get("/admin").get_data(as_text=True)
    assert "No accuracy tables yet" not in html
    for split in ("PublicTest", "PrivateTest"):
        for c in ("7", "6"):
            assert f"{split}, {c} classes" in html
    # one row per member, per rule and the chosen ensemble; one column per class, then overall
    tables = re.findall(r'<table class="acc">(.*?)</table>', html, re.S)
    assert len(tables) == 4
    for t, classes in zip(tables, (7, 6, 7, 6)):
        head = re.findall(r"<th>(.*?)</th>", t.split("</thead>")[0])
        assert len(head) == classes + 2 and head[0] == "model" and head[-1] == "Overall"
        assert len(re.findall(r"<tr class=", t)) == len(m["members"]) + len(m["rules"]) + 1
    assert "Disgust" in tables[0] and "Disgust" not in tables[1]
    for n, s in m["members"].items():
        assert n in html
        assert f"{100 * s['PrivateTest']['6']['accuracy']:.2f}" in tables[3]
        assert f"{100 * s['PublicTest']['7']['recall']['fear']:.1f}" in tables[0]
    assert f"{100 * m['ensemble']['PublicTest']['7']['accuracy']:.2f}" in tables[0]
    assert f"ensemble (chosen: {m['chosen']['rule']})" in html
    assert "ensemble: average" in html
    assert "/admin/files/confusion.png" in html
    assert "Training curves" in html


def _cells(table_html):
    """[(row classes, [(cell attributes, text)])] of an accuracy table's body."""
    body = table_html.split("<tbody>")[1]
    return [(cls.split(), re.findall(r"<td([^>]*)>(.*?)</td>", row, re.S))
            for cls, row in re.findall(r'<tr class="([^"]*)">(.*?)</tr>', body, re.S)]


def test_admin_marks_the_chosen_row_and_the_best_number_per_column(models_with_metrics):
    m = json.loads((models_with_metrics / "metrics.json").read_text())
    html = make_app(models_with_metrics).test_client().get("/admin").get_data(as_text=True)
    key = re.search(r'<p class="key" id="table-key">(.*?)</p>', html, re.S).group(1)
    assert "tag-chosen" in key and "the best number in its column" in " ".join(key.split())
    tables = re.findall(r'<table class="acc">(.*?)</table>', html, re.S)
    assert len(tables) == 4
    for t in tables:
        rows = _cells(t)
        chosen = [cells for cls, cells in rows if "chosen" in cls]
        assert len(chosen) == 1, "exactly one chosen row per table"
        assert f'<span class="tag tag-chosen">chosen</span> ensemble (chosen: {m["chosen"]["rule"]})' in chosen[0][0][1]
        assert sum("tag-chosen" in cells[0][1] for _, cells in rows) == 1
        # green (class "best") exactly where the shown number is its column's highest
        values = [[float(text) for _, text in cells[1:]] for _, cells in rows]
        for j in range(len(values[0])):
            top = max(v[j] for v in values)
            marked = ["best" in re.findall(r'class="([^"]*)"', cells[1 + j][0] + 'class=""')[0].split()
                      for _, cells in rows]
            assert marked == [v[j] == top for v in values], (j, values)
    # curves load with the page: a screenshot shows them without scrolling first
    assert 'loading="lazy"' not in html


def test_best_marks_follow_the_shown_numbers_not_the_chosen_row():
    from fer_core.metrics import _mark_best
    # PrivateTest, 6 classes, as shipped: "accuracy" is a hair above the chosen "average"
    rows = [{"name": "ensemble: accuracy", "recall": [68.52, 81.49], "accuracy": 70.270},
            {"name": "ensemble (chosen: average)", "recall": [68.48, 81.21], "accuracy": 70.242},
            {"name": "vgg_s", "recall": [65.61, 80.04], "accuracy": 69.351}]
    _mark_best(rows)
    assert [r["best"] for r in rows] == [True, False, False]
    # 68.52 and 68.48 both show as 68.5: both green; 81.49 (81.5) alone in its column
    assert [r["best_recall"] for r in rows] == [[True, True], [True, False], [False, False]]


def test_admin_pictures_are_served_safely(models_with_metrics):
    app = make_app(models_with_metrics)
    c = app.test_client()
    member = json.loads((models_with_metrics / "ensemble.json").read_text())["members"][0]
    r = c.get("/admin/files/confusion.png")
    assert r.status_code == 200 and r.mimetype == "image/png" and r.get_data()[:8] == b"\x89PNG\r\n\x1a\n"
    r = c.get(f"/admin/members/{member}/curve.png")
    assert r.status_code == 200 and r.get_data()[:4] == b"\x89PNG"
    assert c.get("/admin/files/report.md").status_code == 200
    for bad in ("/admin/files/ensemble.json", "/admin/files/..%2Fensemble.json", "/admin/files/../ensemble.json",
                f"/admin/members/{member}/weights.npz", f"/admin/members/{member}/..%2F..%2Fensemble.json",
                "/admin/members/..%2F..%2Fetc/curve.png", "/admin/members/../curve.png",
                "/admin/members/nobody/curve.png", "/admin/members/.hidden/curve.png",
                "/admin/files/%2Fetc%2Fpasswd", "/admin/members/%2Fetc/passwd"):
        assert c.get(bad, follow_redirects=True).status_code == 404, bad
    # remote without the secret: not even the pictures
    assert c.get("/admin/files/confusion.png", environ_base=REMOTE).status_code == 403


def test_admin_damaged_metrics(models_with_metrics, tmp_path):
    md = tmp_path / "m"
    shutil.copytree(models_with_metrics, md)
    (md / "metrics.json").write_text("{not json")
    html = make_app(md).test_client().get("/admin").get_data(as_text=True)
    assert "could not be shown" in html


def test_admin_stats_shape(tiny_models):
    """A fresh app without a worker: nothing counted yet, and no worker to describe."""
    s = make_app(tiny_models).test_client().get("/admin/stats").get_json()
    assert set(s) >= {"clients", "fps", "latency_ms", "frames", "errors", "uptime_s", "worker"}
    assert set(s["latency_ms"]) >= {"p50", "p95"}
    assert (s["clients"], s["frames"], s["faces"], s["fps"], s["errors"], s["worker"]) == (0, 0, 0, 0, {}, None)
    assert s["latency_ms"] == {"p50": None, "p95": None, "max": None} and 0 <= s["uptime_s"] <= 5


# -- settings ----------------------------------------------------------------------------------------

def test_config_defaults_and_env():
    from webapp.config import WebConfig
    d = WebConfig()
    assert d.max_frame_bytes == 1_000_000 and d.admin_secret is None and d.max_fps == 30
    assert d.transport_max_bytes > d.max_frame_bytes
    c = WebConfig.from_env({"FER_MODELS": "/m", "FER_ADMIN_SECRET": "k", "FER_MAX_FRAME_BYTES": "2000",
                            "FER_MAX_FPS": "12.5", "FER_ADMIN_LOCAL_OPEN": "no", "FER_TRUST_PROXY": "1"})
    assert (c.admin_secret, c.max_frame_bytes, c.max_fps, c.admin_local_open, c.trust_proxy) == \
        ("k", 2000, 12.5, False, 1)
    assert c.models_dir is None  # fer_core.store.resolve_models_dir reads FER_MODELS, for every entry point
    assert WebConfig.from_env({"FER_ADMIN_SECRET": ""}).admin_secret is None
    with pytest.raises(ValueError, match="FER_MAX_FPS"):
        WebConfig.from_env({"FER_MAX_FPS": "fast"})
    with pytest.raises(ValueError):
        WebConfig(max_fps=0)


def test_worker_config_is_the_web_configs_part_without_defaults_of_its_own(capsys):
    import dataclasses
    from webapp.config import WebConfig, WorkerConfig
    from webapp.worker import parse_args
    web = WebConfig.from_env({"FER_MAX_BATCH": "8", "FER_TTA": "zoom-flip", "FER_WARM_UP_FACES": "4",
                              "FER_MAX_FACES": "2", "FER_WORKER_BATCH_TIMEOUT": "9.5"})
    w = web.worker("/m")
    assert (w.models_dir, w.max_batch_frames, w.tta, w.warm_up_faces, w.max_faces, w.worker_batch_timeout) == \
        ("/m", 8, "zoom-flip", 4, 2, 9.5)
    assert all(getattr(w, f.name) == getattr(web, f.name) for f in dataclasses.fields(w) if f.name != "models_dir")
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(WorkerConfig))
    web_types = {f.name: f.type for f in dataclasses.fields(WebConfig)}  # re-declared, never retyped
    assert all(f.type == web_types[f.name] for f in dataclasses.fields(WorkerConfig) if f.name != "models_dir")
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.max_faces = 3
    assert WorkerConfig.from_json(w.to_json()) == w and parse_args([w.to_json()]) == (w, -1, False)
    assert parse_args([w.to_json(), "--explain"]) == (w, -1, True)
    # the explainer's settings: the worker's, with its own threads (FER_EXPLAIN_THREADS) and niceness
    e = WebConfig.from_env({"FER_EXPLAIN_THREADS": "2", "FER_EXPLAIN_NICE": "5", "FER_WHY_INTERVAL": "0.5"}).explainer("/m")
    assert (e.tf_threads, e.explain_nice, e.models_dir) == (2, 5, "/m")
    assert WebConfig.from_env({"FER_EXPLAIN": "0"}).explain is False and WebConfig().explain is True
    for bad in ({"why_interval": -1}, {"explain_nice": 20}, {"explain_threads": -1}):
        with pytest.raises(ValueError, match="why_interval"):
            WebConfig(**bad)
    assert WorkerConfig.from_json(WebConfig().worker("/m").to_json()).tta is None  # the folder's own views
    for bad in ('{"models_dir": "/m"}', "[1]", "--models /m", dict(json.loads(w.to_json()), tta="sideways")):
        with pytest.raises(ValueError, match="not a worker config"):
            WorkerConfig.from_json(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(SystemExit):
        parse_args(['{"models_dir": "/m"}'])
    assert "not a worker config" in capsys.readouterr().err


def test_the_worker_runs_on_the_config_it_is_handed(tiny_models, astronaut_bgr):
    """`python -m webapp.worker CONFIG_JSON` as InferenceClient starts it: ready with the views and
    the tracking it was given, a frame of two faces answered with max_faces of them, and a client's
    second frame answered with views spread over its two frames."""
    import cv2
    from webapp import wire
    from webapp.config import WebConfig
    cfg = WebConfig(models_dir=str(tiny_models), max_faces=1, tta="zoom-flip", warm_up_faces=1,
                    track_still=2.5).worker(tiny_models)
    face = cv2.resize(astronaut_bgr, (320, 320))
    frame = cv2.imencode(".jpg", np.hstack([face, face]))[1].tobytes()
    proc = subprocess.Popen([sys.executable, "-m", "webapp.worker", cfg.to_json()], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready, _ = wire.read_message(proc.stdout)
        assert ready["type"] == "ready" and ready["tta"] == "zoom-flip", ready
        assert (ready["track_every"], ready["track_still"], ready["spread_views"]) == (8, 2.5, True)
        got = []
        for rid in (5, 6):
            wire.write_message(proc.stdin, {"type": "batch", "ids": [rid], "clients": ["a"]}, [frame])
            answer, _ = wire.read_message(proc.stdout)
            got += answer["results"]
        assert [(r["id"], r["width"], len(r["faces"]), r["views"], r["spread"]) for r in got] == \
            [(5, 640, 1, "zoom-flip", False), (6, 640, 1, "zoom-flip", True)]
    finally:
        proc.stdin.close()
        assert proc.wait(60) == 0


# -- plumbing units ----------------------------------------------------------------------------------

def test_wire_round_trip_and_short_reads():
    from webapp import wire

    class Dribble(io.RawIOBase):  # a pipe that returns at most 3 bytes per read
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(min(n, 3))

    blobs = [b"\xff\xd8jpeg", b"", bytes(range(256)) * 10]
    data = wire.encode({"type": "batch", "ids": [1, 2, 3]}, blobs) + wire.encode({"type": "x"})
    f = Dribble(data)
    h, b = wire.read_message(f)
    assert h["ids"] == [1, 2, 3] and b == blobs
    assert wire.read_message(f)[0]["type"] == "x"
    with pytest.raises(wire.WireError):
        wire.read_message(f)
    with pytest.raises(wire.WireError):
        wire.decode(b"\x00\x00\x00\x02{}extra")
    with pytest.raises(wire.WireError):
        wire.read_message(io.BytesIO(b"\xff\xff\xff\xff"))


def test_client_gate_busy_and_rate():
    from webapp.events import ClientGate
    g = ClientGate()
    assert g.begin(3, now=0.0) is None
    assert g.begin(3, now=0.01) == "busy"
    g.end()
    assert g.begin(3, now=0.1) is None
    g.end()
    assert g.begin(3, now=0.2) is None
    g.end()
    assert g.begin(3, now=0.3) == "rate_limited"
    assert g.begin(3, now=1.05) is None  # the first frame left the one-second window


def test_why_gate_one_in_flight_and_one_per_interval():
    from webapp.events import ClientGate
    g = ClientGate().why
    assert g.begin(2.0, now=10.0) == (None, 0.0)
    assert g.begin(2.0, now=10.1) == ("busy", 0.0)
    g.end()
    code, wait = g.begin(2.0, now=11.5)  # answered, but the interval counts from the accepted request
    assert code == "rate_limited" and wait == pytest.approx(0.5)
    assert g.begin(2.0, now=12.0) == (None, 0.0)
    g.end()
    assert g.begin(0.0, now=12.0) == (None, 0.0)  # interval 0: only the one-in-flight rule


def test_latency_histogram():
    from webapp.stats import LatencyHistogram, Stats
    h = LatencyHistogram()
    assert h.percentile(50) is None
    for v in range(1, 101):
        h.add(float(v))
    assert 50 <= h.percentile(50) <= 50 * 1.06
    assert 95 <= h.percentile(95) <= 95 * 1.06
    assert h.percentile(100) == 100
    s = Stats()
    s.connected(); s.frame(12.0, 1); s.error("busy")
    snap = s.snapshot()
    assert snap["clients"] == 1 and snap["frames"] == 1 and snap["errors"] == {"busy": 1} and snap["fps"] > 0


def test_web_process_never_imports_tensorflow(tiny_models, astronaut_jpeg, tmp_path):
    """create_app + a real frame through the worker, in a fresh interpreter: TensorFlow and Keras are
    loaded in the worker subprocess only."""
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(astronaut_jpeg)
    code = textwrap.dedent(f"""
        import sys
        from webapp import WebConfig, create_app
        app = create_app(WebConfig(models_dir={str(tiny_models)!r}))
        st = app.extensions["fer"]
        assert st.inference.wait_ready(180), st.inference.last_error
        c = app.extensions["socketio"].test_client(app)
        c.emit("frame", open({str(frame)!r}, "rb").read())
        names = [e["name"] for e in c.get_received()]
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "cv2"))
        print("RESULT", names, heavy)
        st.inference.close()
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, out.stdout[-2000:] + out.stderr[-3000:]
    assert line == "RESULT ['hello', 'result'] []", line


def test_worker_that_cannot_load_is_reported(tiny_models, tmp_path):
    """Damaged weights: the worker reports why and exits; /healthz says 'failed', frames get
    'unavailable', and the dispatcher keeps retrying (with back-off) rather than giving up."""
    import time
    from webapp.inference import InferenceError
    md = tmp_path / "broken"
    shutil.copytree(tiny_models, md)
    member = json.loads((md / "ensemble.json").read_text())["members"][0]
    (md / member / "weights.npz").write_bytes(b"not a zip file")
    app = make_app(md, worker_start=True)
    inf = app.extensions["fer"].inference
    try:
        end = time.monotonic() + 120
        while inf.state != "failed" and time.monotonic() < end:
            time.sleep(0.2)
        assert inf.state == "failed"
        assert "weights" in inf.last_error
        r = app.test_client().get("/healthz")
        assert r.status_code == 503 and r.get_json()["status"] == "failed"
        with pytest.raises(InferenceError) as e:
            inf.infer(b"\xff\xd8")
        assert e.value.code == "unavailable"
    finally:
        inf.close()


# -- abuse: admin password guessing, CORS, protocol violations ----------------------------------------

def test_failure_limiter_window_and_bounds():
    from webapp.admin import FailureLimiter
    lim = FailureLimiter(max_failures=3, window=60, max_addresses=2)
    for t in (0, 1, 2):
        assert lim.retry_after("a", now=t) == 0
        lim.fail("a", now=t)
    assert lim.retry_after("a", now=3) == 57  # until the first of the three is 60 s old
    assert lim.retry_after("a", now=60.5) == 0
    lim.fail("b", now=61)
    lim.fail("c", now=62)  # a third address: the least recently failing one ('a') is forgotten
    assert "a" not in lim._fails and set(lim._fails) == {"b", "c"}
    lim.succeed("b")
    assert "b" not in lim._fails
    assert FailureLimiter(max_failures=0).retry_after("x") == 0  # 0 turns it off


def test_admin_password_guessing_is_rate_limited(tiny_models):
    """Wrong passwords from one address: 401 each, then 429 with Retry-After for that address only,
    even with the right password; other addresses and localhost are unaffected."""
    app = make_app(tiny_models, admin_secret="right", admin_max_failures=5, admin_failure_window=120)
    c = app.test_client()
    guesser = {"REMOTE_ADDR": "198.51.100.7"}
    assert c.get("/admin", environ_base=guesser).status_code == 401  # no password yet: not a failure
    for i in range(5):
        assert c.get("/admin", environ_base=guesser, headers=basic(f"guess{i}")).status_code == 401
    for headers in (basic("guess5"), basic("right")):
        r = c.get("/admin/stats", environ_base=guesser, headers=headers)
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 120
        assert "error" in r.get_json()
    assert c.get("/admin", environ_base=REMOTE, headers=basic("right")).status_code == 200
    assert c.get("/admin").status_code == 200  # localhost needs no password
    # a success clears an address's count
    other = {"REMOTE_ADDR": "198.51.100.8"}
    for i in range(4):
        c.get("/admin", environ_base=other, headers=basic("no"))
    assert c.get("/admin", environ_base=other, headers=basic("right")).status_code == 200
    assert c.get("/admin", environ_base=other, headers=basic("no")).status_code == 401


def _handshake(app, origin=None):
    """An Engine.IO polling handshake as a browser on ``origin`` would make it."""
    headers = {"Origin": origin} if origin else {}
    return app.test_client().get("/socket.io/?EIO=4&transport=polling", headers=headers)


def test_cors_same_origin_by_default(tiny_models):
    app = make_app(tiny_models)
    assert _handshake(app).status_code == 200  # no Origin: not a browser page elsewhere
    assert _handshake(app, "http://localhost").status_code == 200  # the page of this very server
    r = _handshake(app, "https://evil.example")
    assert r.status_code == 400 and "Access-Control-Allow-Origin" not in r.headers


def test_forwarded_headers_widen_origins_only_from_a_trusted_proxy(tiny_models):
    """Origin http://evil.example with X-Forwarded-Host: evil.example opened a session (and polling
    answered Access-Control-Allow-Origin: http://evil.example) with FER_TRUST_PROXY unset:
    python-engineio's same-origin rule reads X-Forwarded-Host/-Proto from any client."""
    app = make_app(tiny_models)
    for fwd in ({"X-Forwarded-Host": "evil.example"}, {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"}):
        r = app.test_client().get("/socket.io/?EIO=4&transport=polling", headers={"Origin": "http://evil.example", **fwd})
        assert r.status_code == 400 and "Access-Control-Allow-Origin" not in r.headers, fwd
    r = app.test_client().get("/socket.io/?EIO=4&transport=polling",
                              headers={"Origin": "https://localhost", "X-Forwarded-Proto": "https"})
    assert r.status_code == 400  # the scheme a client claims does not count either
    # behind a trusted TLS proxy (FER_TRUST_PROXY=1, from loopback) the page's https origin is this server's
    app = make_app(tiny_models, trust_proxy=1, allowed_hosts="classroom.example")
    proxied = {"Host": "classroom.example", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    r = app.test_client().get("/socket.io/?EIO=4&transport=polling",
                              headers={"Origin": "https://classroom.example", **proxied})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://classroom.example"
    r = app.test_client().get("/socket.io/?EIO=4&transport=polling", environ_base={"REMOTE_ADDR": "198.51.100.7"},
                              headers={"Origin": "https://classroom.example", **proxied})
    assert r.status_code == 400  # the same headers from a peer that is not a trusted proxy


def test_security_headers_on_every_response(tiny_models):
    """The headers came from Flask's after_request: the guard's refusals (400, 411, 413) and Engine.IO's
    replies (its handshake, its 400 for a foreign origin) went out without them."""
    c = make_app(tiny_models).test_client()
    answers = {"page": c.get("/"), "guard 400": c.get("/", headers={"Host": "evil.example"}),
               "guard 411": c.post("/socket.io/?EIO=4&transport=polling", data=b"x",
                                   headers={"Transfer-Encoding": "chunked"}),
               "engine.io handshake": c.get("/socket.io/?EIO=4&transport=polling"),
               "engine.io 400": c.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"})}
    assert [r.status_code for r in answers.values()] == [200, 400, 411, 200, 400]
    for what, r in answers.items():
        assert r.headers.get("X-Content-Type-Options") == "nosniff", what
        assert r.headers.get("Referrer-Policy") == "no-referrer", what
        assert "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", ""), what
        assert len(r.headers.getlist("Content-Security-Policy")) == 1, what
    assert "ws://localhost wss://localhost" in answers["page"].headers["Content-Security-Policy"]
    r = make_app(tiny_models, allowed_hosts="*").test_client().get("/", headers={"Host": "a;script-src *"})
    assert "script-src *" not in r.headers["Content-Security-Policy"]


def test_cors_origins_are_configurable(tiny_models):
    app = make_app(tiny_models, cors_origins="https://school.example, http://10.0.0.5:8000")
    ok = _handshake(app, "https://school.example")
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://school.example"
    assert _handshake(app, "http://10.0.0.5:8000").status_code == 200
    assert _handshake(app, "https://evil.example").status_code == 400
    assert _handshake(make_app(tiny_models, cors_origins="*"), "https://evil.example").status_code == 200
    with pytest.raises(ValueError, match="origin"):
        make_app(tiny_models, cors_origins="school.example/path")


def test_new_settings_from_env():
    from webapp.config import WebConfig
    c = WebConfig.from_env({"FER_TTA": "off", "FER_TF_THREADS": "2", "FER_MESSAGE_QUEUE": "redis://127.0.0.1:6379/0",
                            "FER_CORS_ORIGINS": "*", "FER_MAX_VIOLATIONS": "5", "FER_ADMIN_MAX_FAILURES": "3"})
    assert (c.tta, c.tf_threads, c.message_queue, c.cors_allowed_origins, c.max_violations,
            c.admin_max_failures) == ("none", 2, "redis://127.0.0.1:6379/0", "*", 5, 3)
    d = WebConfig()
    assert d.tta is None and d.message_queue is None and d.cors_allowed_origins is None
    assert d.max_violations > 0 and d.admin_max_failures > 0
    assert WebConfig.from_env({"FER_MESSAGE_QUEUE": ""}).message_queue is None
    # a server under load: from how many frames a batch is a class, and views spread over frames
    light = WebConfig.from_env({"FER_SPREAD_VIEWS": "off", "FER_ONE_VIEW_FROM": "6", "FER_TRACK_STILL": "2.5"})
    assert (light.spread_views, light.one_view_from, light.track_still) == (False, 6, 2.5)
    assert (d.spread_views, d.one_view_from, d.track_still) == (True, 12, 4.0)
    w = type(light.worker("/m")).from_json(light.worker("/m").to_json())
    assert (w.spread_views, w.track_still) == (False, 2.5)
    for bad in ({"FER_SPREAD_VIEWS": "half"}, {"FER_ONE_VIEW_FROM": "-1"}, {"FER_TRACK_STILL": "-1"}):
        with pytest.raises(ValueError, match="half|-1"):
            WebConfig.from_env(bad)
    # a retired setting is refused by name, not silently ignored
    with pytest.raises(ValueError, match="FER_LOAD_VIEWS='zoom' is no longer a setting.*FER_SPREAD_VIEWS"):
        WebConfig.from_env({"FER_LOAD_VIEWS": "zoom"})
    with pytest.raises(ValueError, match="FER_LOAD_VIEWS_FROM='6' is no longer a setting.*FER_ONE_VIEW_FROM"):
        WebConfig.from_env({"FER_LOAD_VIEWS_FROM": "6"})
    with pytest.raises(ValueError, match="FER_ASYNC_MODE='threading' is no longer a setting.*eventlet"):
        WebConfig.from_env({"FER_ASYNC_MODE": "threading"})


def test_detector_setting_reaches_the_worker():
    from webapp.config import ENV, WebConfig
    assert WebConfig().detector == "blazeface" and WebConfig().detector_threads == 1
    c = WebConfig.from_env({ENV["detector"]: "haar", ENV["detector_threads"]: "2"})
    w = c.worker("/m")
    assert (w.detector, w.detector_threads) == ("haar", 2)
    assert type(w).from_json(w.to_json()).detector == "haar"
    for bad in ({"FER_DETECTOR": "yolo"}, {"FER_DETECTOR_THREADS": "0"}):
        with pytest.raises(ValueError, match="yolo|0"):
            WebConfig.from_env(bad)


def test_client_gate_counts_violations():
    from webapp.events import ClientGate
    g = ClientGate()
    assert not any(g.violation(3, 10.0, now=t) for t in (0, 1, 2))
    assert g.violation(3, 10.0, now=3)          # the 4th within 10 s
    assert not g.violation(3, 10.0, now=3.5)    # reported once
    h = ClientGate()
    assert not any(h.violation(3, 10.0, now=t) for t in (0, 5, 11, 16, 22, 27))  # spread out: never
    assert not any(ClientGate().violation(0, 10.0, now=t) for t in range(100))   # 0: off


def test_fast_websocket_unmasking_matches_eventlets():
    """webapp.websocket_mask.apply_mask (installed under eventlet) returns exactly what eventlet's own
    per-byte unmasking returns, for any length, key and offset (frames arrive in pieces)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.websocket import RFC6455WebSocket
    from webapp.websocket_mask import apply_mask
    original = RFC6455WebSocket.__dict__["_apply_mask"]
    original = original.__func__ if isinstance(original, staticmethod) else original
    if original is apply_mask:  # installed already by a server in this process: compare with a copy
        def original(data, mask, length=None, offset=0):
            length = len(data) if length is None else length
            return b"".join(bytes((data[i] ^ mask[(offset + i) % 4],)) for i in range(length))
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 100, 4097, 20_000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        mask = tuple(int(v) for v in rng.integers(0, 256, 4))
        for offset in (0, 1, 2, 3, 5, 1000):
            for length in {None, n, max(0, n - 3)}:
                assert apply_mask(data, mask, length, offset) == original(data, mask, length, offset)
        assert apply_mask(bytearray(data), list(mask)) == original(data, mask)


def test_admin_shows_the_training_campaign_when_the_folder_has_one(models_with_metrics, tmp_path):
    md = tmp_path / "m"
    shutil.copytree(models_with_metrics, md)
    c = make_app(md).test_client()
    assert "campaign.png" not in c.get("/admin").get_data(as_text=True)  # no log: no empty picture
    assert c.get("/admin/files/campaign.png").status_code == 404
    shipped = Path(__file__).resolve().parent.parent / "models"
    for f in ("campaign.csv", "campaign.png"):
        shutil.copy(shipped / f, md / f)
    html = c.get("/admin").get_data(as_text=True)
    assert "Training campaign" in html and "/admin/files/campaign.png" in html
    r = c.get("/admin/files/campaign.png")
    assert r.status_code == 200 and r.get_data()[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.get("/admin/files/campaign.csv").get_data(as_text=True).startswith("date,training_hours")
    assert c.get("/admin/files/campaign.png", environ_base=REMOTE).status_code == 403


def test_worker_unresponsive_after_setting():
    from webapp.config import WebConfig
    c = WebConfig.from_env({"FER_WORKER_UNRESPONSIVE_AFTER": "1.5"})
    assert c.worker_unresponsive_after == 1.5 and c.worker("m").worker_unresponsive_after == 1.5
    assert WebConfig(worker_heartbeat_timeout=0, worker_unresponsive_after=30).worker_unresponsive_after == 30
    for bad in ({"worker_unresponsive_after": -1}, {"worker_unresponsive_after": 11, "worker_heartbeat_timeout": 10}):
        with pytest.raises(ValueError, match="worker_unresponsive_after"):
            WebConfig(**bad)

"""Prometheus metrics at /metrics (webapp/metrics.py): the access rule of /admin/stats, one registry
per app, and the numbers a real frame through the real worker leaves there; /healthz and /admin/stats
say which runtime serves and the timings that chose it."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_webapp import REMOTE, basic, make_app


def samples(resp) -> dict:
    """{(name, ((label, value), ...)): value} of a /metrics answer."""
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for fam in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_follow_the_admin_stats_access_rule(tiny_models):
    app = make_app(tiny_models, admin_secret="k3y")
    c = app.test_client()
    got = samples(c.get("/metrics"))  # localhost: open, as /admin/stats
    assert got[("fer_frames_total", ())] == 0 and got[("fer_clients", ())] == 0
    assert c.get("/metrics", environ_base=REMOTE).status_code == 401
    assert c.get("/metrics", environ_base=REMOTE, headers=basic("nope")).status_code == 401
    assert samples(c.get("/metrics", environ_base=REMOTE, headers=basic("k3y")))[("fer_faces_total", ())] == 0
    assert make_app(tiny_models).test_client().get("/metrics", environ_base=REMOTE).status_code == 403


def test_each_app_counts_its_own(tiny_models):
    one, two = make_app(tiny_models), make_app(tiny_models)
    one.extensions["fer"].stats.frame(40.0, 2)
    one.extensions["fer"].stats.error("bad_image")
    a, b = samples(one.test_client().get("/metrics")), samples(two.test_client().get("/metrics"))
    assert (a[("fer_frames_total", ())], a[("fer_faces_total", ())]) == (1, 2)
    assert a[("fer_frame_errors_total", (("code", "bad_image"),))] == 1
    assert a[("fer_frame_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert a[("fer_frame_latency_seconds_bucket", (("le", "0.025"),))] == 0
    assert a[("fer_frame_latency_seconds_sum", ())] == pytest.approx(0.04)
    assert (b[("fer_frames_total", ())], b[("fer_frame_latency_seconds_count", ())]) == (0, 0)
    assert ("fer_frame_errors_total", (("code", "bad_image"),)) not in b


@pytest.fixture(scope="module")
def served(tiny_models):
    from webapp import WebConfig, create_app
    app = create_app(WebConfig(models_dir=str(tiny_models), explain=False))
    st = app.extensions["fer"]
    assert st.inference.wait_ready(180), st.inference.last_error
    yield app
    st.inference.close()


def test_a_served_frame_shows_in_the_metrics(served, astronaut_jpeg):
    c = served.extensions["socketio"].test_client(served)
    assert c.is_connected()
    c.get_received()
    c.emit("frame", astronaut_jpeg)  # a face: the ensemble runs
    c.emit("frame", b"not an image")
    got = [(e["name"], (e["args"][0] or {}).get("code")) for e in c.get_received() if e["name"] in ("result", "error")]
    assert got == [("result", None), ("error", "bad_image")], got
    m = samples(served.test_client().get("/metrics"))
    c.disconnect()
    assert (m[("fer_frames_total", ())], m[("fer_faces_total", ())], m[("fer_clients", ())]) == (1, 1, 1)
    assert m[("fer_frame_errors_total", (("code", "bad_image"),))] == 1
    assert m[("fer_batch_frames_count", ())] == 2 and m[("fer_batch_frames_bucket", (("le", "1.0"),))] == 2
    for stage in ("queue", "worker", "model", "roundtrip"):
        assert m[("fer_stage_latency_seconds_count", (("stage", stage),))] == 2, stage
    # the worker's own time lies within the round trip, the model's within the worker's
    total = {s: m[("fer_stage_latency_seconds_sum", (("stage", s),))] for s in ("worker", "model", "roundtrip")}
    assert 0 < total["model"] <= total["worker"] <= total["roundtrip"], total
    assert (m[("fer_worker_up", (("role", "frames"),))], m[("fer_queue_frames", (("role", "frames"),))]) == (1, 0)
    assert m[("fer_worker_restarts_total", (("role", "frames"),))] == 0
    # no runtimes.json beside the tiny members: TensorFlow float32, measured against nothing else
    assert m[("fer_runtime_info", (("how", "measured"), ("precision", "float32"), ("runtime", "tensorflow")))] == 1
    assert m[("fer_runtime_timing_seconds", (("precision", "float32"), ("runtime", "tensorflow")))] > 0


def test_healthz_and_admin_stats_say_what_serves_and_why(served):
    h = served.test_client().get("/healthz").get_json()
    choice = h["runtime"]
    assert (choice["runtime"], choice["precision"], choice["how"]) == ("tensorflow", "float32", "measured")
    assert choice["timings_ms"]["tensorflow/float32"] > 0 and choice["batch"] == 16
    if choice["reasons"].get("litert/int8") is not None:  # LiteRT installed: not admitted without a record
        assert "no score in runtimes.json" in choice["reasons"]["litert/int8"]
    s = served.test_client().get("/admin/stats").get_json()
    assert s["worker"]["runtime_choice"] == choice
    html = served.test_client().get("/admin").get_data(as_text=True)
    assert "tensorflow float32 (measured" in html

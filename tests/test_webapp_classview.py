"""The teacher's class view (webapp/classview.py): counts per label of the clients' latest answers,
now and over the last minutes, through the real socket events and /admin/stats with an inference
stand-in whose answer is the frame's own text (so a test says which label each client shows)."""
from __future__ import annotations

import json

import pytest

from webapp.classview import ClassView

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
REMOTE = {"REMOTE_ADDR": "10.1.2.3"}


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class LabelsFromFrames:
    """The inference client's part that events.py and admin.py use. A frame b"happy|..." is answered
    with one face labelled happy, b"|..." with no face; ``clients`` records who asked."""

    def __init__(self):
        self.info = {"labels": LABELS, "members": ["m1", "m2"]}
        self.state, self.ready, self.responsive = "ready", True, True
        self.clients = []

    def infer(self, data, timeout=None, client=None):
        self.clients.append(client)
        label = bytes(data).split(b"|", 1)[0].decode()
        faces = [{"box": [10, 10, 50, 50], "label": label, "probabilities": {l: float(l == label) for l in LABELS},
                  "members": {"m1": {"label": label, "confidence": 1.0}}}] if label else []
        return {"faces": faces, "width": 320, "height": 240}

    def status(self):
        return {"state": self.state, "heartbeat_s": 0.1, "mean_batch": 1.0}


@pytest.fixture
def served(tiny_models):
    """(app, the stand-in, the class view's clock)."""
    from webapp import WebConfig, create_app
    app = create_app(WebConfig(models_dir=str(tiny_models), worker_start=False, admin_secret="s3cret",
                               class_window=10, class_bucket=10, class_buckets=30))
    st = app.extensions["fer"]
    st.inference = LabelsFromFrames()
    clock = Clock()
    st.classview.clock = clock
    return app, st.inference, clock


def connect(app):
    c = app.extensions["socketio"].test_client(app)
    assert c.is_connected()
    c.get_received()
    return c


def send(c, frame: bytes):
    c.emit("frame", frame)
    got = [e["name"] for e in c.get_received()]
    assert got == ["result"], got


def stats(app):
    r = app.test_client().get("/admin/stats")
    assert r.status_code == 200
    return r.get_json()["class"], r.get_data(as_text=True)


def by_label(row, labels=LABELS):
    return {l: n for l, n in zip(labels, row["counts"]) if n}


def test_two_clients_are_counted_once_each_by_their_latest_label(served):
    app, _, clock = served
    a, b = connect(app), connect(app)
    send(a, b"happy|frame")
    send(b, b"sad|frame")
    clock.t += 2
    send(b, b"happy|frame")                  # b changed its mind: counted once, as happy
    cls, _ = stats(app)
    assert cls["labels"] == LABELS and cls["window_s"] == 10 and cls["bucket_s"] == 10
    assert by_label(cls["current"]) == {"happy": 2} and cls["current"]["clients"] == 2
    assert len(cls["timeline"]) == 30 and by_label(cls["timeline"][-1]) == {"happy": 2}
    assert all(not any(r["counts"]) for r in cls["timeline"][:-1])
    send(a, b"|no face in this frame")
    cls, _ = stats(app)
    assert by_label(cls["current"]) == {"happy": 1} and cls["current"]["no_face"] == 1
    assert cls["current"]["clients"] == 2


def test_a_client_that_left_drops_out_after_the_window_and_stays_in_the_timeline(served):
    app, _, clock = served
    a, b = connect(app), connect(app)
    send(a, b"fear|x")
    send(b, b"surprise|x")
    a.disconnect()
    clock.t += 9.5
    assert by_label(stats(app)[0]["current"]) == {"fear": 1, "surprise": 1}  # its last answer is 9.5 s old
    clock.t += 1                                                              # 10.5 s: out
    send(b, b"surprise|x")
    cls, _ = stats(app)
    assert by_label(cls["current"]) == {"surprise": 1} and cls["current"]["clients"] == 1
    assert sum(by_label(r).get("fear", 0) for r in cls["timeline"]) == 1     # the past keeps it
    clock.t += 30 * 10                                                        # five minutes later
    cls, _ = stats(app)
    assert cls["current"]["clients"] == 0 and not any(n for r in cls["timeline"] for n in r["counts"])


def test_the_json_has_counts_only_no_client_and_no_image(served):
    app, inference, _ = served
    marker = b"PIXELS-7f3a"
    clients = [connect(app) for _ in range(3)]
    for c, label in zip(clients, ("happy", "happy", "neutral")):
        send(c, label.encode() + b"|" + marker)
    sids = set(inference.clients)
    assert len(sids) == 3 and all(sids)
    cls, text = stats(app)
    assert set(cls) == {"labels", "window_s", "bucket_s", "current", "timeline", "open_s"}
    assert set(cls["current"]) == {"counts", "no_face", "clients"}
    assert all(set(r) == {"counts", "no_face"} for r in cls["timeline"])
    assert not any(sid in text for sid in sids) and marker.decode() not in text
    assert by_label(cls["current"]) == {"happy": 2, "neutral": 1}
    page = app.test_client().get("/admin").get_data(as_text=True)
    assert not any(sid in page for sid in sids)


def test_the_class_view_is_behind_the_admin_secret(served):
    app, _, _ = served
    c = connect(app)
    send(c, b"happy|x")
    web = app.test_client()
    for headers in ({}, {"Authorization": "Basic YWRtaW46d3Jvbmc="}):  # none, admin:wrong
        r = web.get("/admin/stats", environ_base=REMOTE, headers=headers)
        assert r.status_code == 401 and "class" not in r.get_json() and "happy" not in r.get_data(as_text=True)
    ok = web.get("/admin/stats", environ_base=REMOTE, headers={"Authorization": "Basic YWRtaW46czNjcmV0"})
    assert ok.status_code == 200 and by_label(ok.get_json()["class"]["current"]) == {"happy": 1}


def test_the_admin_page_has_the_class_view(served):
    html = served[0].test_client().get("/admin").get_data(as_text=True)
    assert 'id="class-now"' in html and '<canvas id="class-timeline"' in html
    assert "/static/classview.js" in html


# -- the counter itself ---------------------------------------------------------------------------

def test_each_period_counts_each_client_once_by_its_latest_label():
    clock = Clock(0.0)
    v = ClassView(window=10, bucket=10, buckets=3, clock=clock)
    v.record("a", "happy")
    v.record("a", "sad")
    v.record("b", "sad")
    clock.t = 12                              # the next period
    v.record("a", "happy")
    s = v.snapshot(["happy", "sad"])
    assert [r["counts"] for r in s["timeline"]] == [[0, 0], [0, 2], [1, 0]]
    assert s["current"] == {"counts": [1, 0], "no_face": 0, "clients": 1}  # b's answer is 12 s old: out
    assert s["open_s"] == 2.0


def test_current_is_the_window_not_the_period():
    clock = Clock(0.0)
    v = ClassView(window=10, bucket=10, buckets=3, clock=clock)
    v.record("a", "happy")
    v.record("b", "sad")
    clock.t = 9.9
    assert v.snapshot(["happy", "sad"])["current"]["counts"] == [1, 1]
    clock.t = 10.0
    assert v.snapshot(["happy", "sad"])["current"] == {"counts": [0, 0], "no_face": 0, "clients": 0}


def test_labels_outside_the_given_order_come_after_it():
    v = ClassView(clock=Clock(0.0))
    v.record("a", "zebra")
    v.record("b", "happy")
    s = v.snapshot(["happy", "sad"])
    assert s["labels"] == ["happy", "sad", "zebra"] and s["current"]["counts"] == [1, 0, 1]


def test_memory_is_bounded_however_many_clients_and_however_long():
    clock = Clock(0.0)
    v = ClassView(window=10, bucket=10, buckets=30, max_clients=50, clock=clock)
    for k in range(1000):                         # a thousand clients at once: the 50 latest are kept
        v.record(f"c{k}", LABELS[k % 7])
    assert len(v) == 50
    assert v.snapshot(LABELS)["current"]["clients"] == 50
    for k in range(5000):                         # many hours of one client: the ring keeps 30 periods
        clock.t += 7
        v.record("one", "happy")
    assert len(v._ring) == 30 and len(v.snapshot(LABELS)["timeline"]) == 30
    assert len(v) == 1                            # the thousand left long ago
    assert sum(len(c) for _, c in v._ring) <= 30


@pytest.mark.parametrize("kw, message", [({"window": 0}, "got 0, 10.0"), ({"bucket": -1}, "got 10.0, -1"),
                                          ({"buckets": 0}, "got 0, 10000"), ({"max_clients": 0}, "got 30, 0")])
def test_bad_settings_name_the_value(kw, message):
    with pytest.raises(ValueError, match=message):
        ClassView(**kw)


def test_settings_from_the_environment():
    from webapp.config import WebConfig
    c = WebConfig.from_env({"FER_CLASS_WINDOW": "5", "FER_CLASS_BUCKET": "15", "FER_CLASS_BUCKETS": "12"})
    assert (c.class_window, c.class_bucket, c.class_buckets) == (5.0, 15.0, 12)
    with pytest.raises(ValueError, match="got 10.0, 10.0, 0"):
        WebConfig(class_buckets=0)
    assert json.loads(json.dumps(ClassView().snapshot()))["timeline"][0] == {"counts": [], "no_face": 0}

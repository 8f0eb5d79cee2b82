"""Frames over Socket.IO (Flask-SocketIO's test client, threading mode) through the real inference
worker subprocess on the tiny models folder: results, bad input, limits, batching, a worker crash.

One app (and so one worker) for the whole module, to save the worker's start-up.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness.server import ROOT, grey_jpeg


@pytest.fixture(scope="module")
def app(tiny_models):
    from webapp import WebConfig, create_app
    # a batch of 4 frames or more is a class: its faces get one view each (config.one_view_from)
    app = create_app(WebConfig(models_dir=str(tiny_models), one_view_from=4))
    st = app.extensions["fer"]
    assert st.inference.wait_ready(180), st.inference.last_error
    yield app
    st.inference.close()


@pytest.fixture
def limits(app, monkeypatch):
    """``limits(max_fps=2, ...)`` changes the app's settings for one test (pytest puts them back)."""
    st = app.extensions["fer"]

    def change(**settings):
        monkeypatch.setattr(st, "config", dataclasses.replace(st.config, **settings))
    return change


def client(app):
    c = app.extensions["socketio"].test_client(app)
    assert c.is_connected()
    hello = c.get_received()
    assert [e["name"] for e in hello] == ["hello"]
    return c


def test_a_client_connecting_while_the_server_stops_is_refused(app, monkeypatch):
    st = app.extensions["fer"]
    monkeypatch.setattr(st, "stopping", True)
    c = app.extensions["socketio"].test_client(app)
    assert not c.is_connected()
    monkeypatch.setattr(st, "stopping", False)
    client(app).disconnect()


def answers(c):
    return [(e["name"], e["args"][0] if e["args"] else None) for e in c.get_received() if e["name"] in ("result", "error")]


def send(c, *args):
    c.emit("frame", *args)
    got = answers(c)
    assert len(got) == 1, got
    return got[0]


def check_face_result(res, labels, members):
    assert res["width"] == 320 and res["height"] == 320
    assert isinstance(res["ms"], float) and res["ms"] > 0
    assert len(res["faces"]) == 1
    f = res["faces"][0]
    assert f["label"] in labels
    assert list(f["probabilities"]) == labels
    assert abs(sum(f["probabilities"].values()) - 1) < 1e-3
    assert f["label"] == max(f["probabilities"], key=f["probabilities"].get)
    assert sorted(f["members"]) == sorted(members)
    for v in f["members"].values():
        assert v["label"] in labels and 0 < v["confidence"] <= 1
    x, y, w, h = f["box"]
    assert 0 <= x and 0 <= y and w > 20 and h > 20 and x + w <= res["width"] and y + h <= res["height"]


def test_hello_carries_limits_and_labels(app):
    c = app.extensions["socketio"].test_client(app)
    (hello,) = c.get_received()
    info = hello["args"][0]
    assert info["max_fps"] == 30 and info["max_frame_bytes"] == 1_000_000
    assert info["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert info["members"] == ["vgg_q", "resnet_q"] and info["views"] == "flip"  # ensemble.json: true
    assert info["why_ready"] is False  # the explainer loads on the first 'why' of the server's life
    c.disconnect()


def test_face_round_trip(app, astronaut_jpeg):
    c = client(app)
    name, res = send(c, astronaut_jpeg)
    assert name == "result", res
    info = app.extensions["fer"].inference.info
    check_face_result(res, info["labels"], info["members"])
    # the astronaut's face is in the upper middle of the photo
    x, y, w, h = res["faces"][0]["box"]
    assert 100 < x + w / 2 < 220 and 30 < y + h / 2 < 130
    # same frame, same answer: the worker is deterministic
    assert send(c, astronaut_jpeg)[1]["faces"] == res["faces"]
    c.disconnect()


def test_several_faces_one_entry_each(app, astronaut_bgr):
    """Two faces side by side (the right one smaller): two entries, largest first, boxes apart."""
    import cv2
    a = cv2.resize(astronaut_bgr, (320, 320))
    b = np.full_like(a, 120)
    b[40:280, 40:280] = cv2.resize(astronaut_bgr, (240, 240))
    frame = cv2.imencode(".jpg", np.hstack([a, b]))[1].tobytes()
    c = client(app)
    name, res = send(c, frame)
    assert name == "result" and res["width"] == 640
    assert len(res["faces"]) == 2, res["faces"]
    (x0, _, w0, h0), (x1, _, w1, h1) = (f["box"] for f in res["faces"])
    assert w0 * h0 > w1 * h1 and x0 < 320 <= x1
    assert all(len(f["members"]) == 2 and f["label"] for f in res["faces"])
    c.disconnect()


def test_healthz_ready(app):
    r = app.test_client().get("/healthz")
    assert r.status_code == 200
    assert r.get_json()["members"] == ["vgg_q", "resnet_q"]


def test_no_face_is_an_empty_list(app):
    c = client(app)
    name, res = send(c, grey_jpeg())
    assert name == "result"
    assert res["faces"] == [] and res["width"] == 320 and res["height"] == 240
    c.disconnect()


def test_png_frames_work_too(app, astronaut_bgr):
    import cv2
    c = client(app)
    png = cv2.imencode(".png", cv2.resize(astronaut_bgr, (320, 320)))[1].tobytes()
    name, res = send(c, png)
    assert name == "result" and len(res["faces"]) == 1
    c.disconnect()


def _huge_png() -> bytes:
    """A real, tiny PNG file of 3000x3000 pixels: more than max_pixels once decoded."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (3000, 3000), 128).save(buf, "PNG")
    return buf.getvalue()


BAD = {
    "not_an_image": ((b"hello, this is not a picture",), "bad_image"),
    "empty": ((b"",), "empty"),
    "truncated_jpeg": (("TRUNCATED",), "bad_image"),
    "jpeg_header_only": (("HEADER",), "bad_image"),
    "too_many_pixels": (("HUGE",), "bad_image"),
    "over_size_limit": (("BIG",), "too_large"),
    "str": (("a string",), "bad_frame"),
    "base64_str": (("B64",), "bad_frame"),
    "dict": (({"frame": "x"},), "bad_frame"),
    "nested_bytes": (({"frame": b"\xff\xd8"},), "bad_frame"),
    "list": (([1, 2, 3],), "bad_frame"),
    "list_of_bytes": (([b"\xff\xd8"],), "bad_frame"),
    "none": ((None,), "bad_frame"),
    "number": ((42,), "bad_frame"),
    "no_args": ((), "bad_frame"),
    "two_args": (("TWO",), "bad_frame"),  # a binary frame and a text argument: one attachment, allowed
    "deeply_nested": (({"a": [{"b": [{"c": [1, {"d": b"x"}]}]}]},), "bad_frame"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_an_error_and_the_connection_survives(app, astronaut_jpeg, case):
    args, code = BAD[case]
    subst = {"TRUNCATED": astronaut_jpeg[: len(astronaut_jpeg) // 2],
             "HEADER": astronaut_jpeg[:600],
             "HUGE": _huge_png(),
             "BIG": astronaut_jpeg + b"\0" * (1_000_001 - len(astronaut_jpeg)),
             "B64": base64.b64encode(astronaut_jpeg).decode()}
    if args and args[0] == "TWO":
        args = (astronaut_jpeg, "and a second argument")
    else:
        args = tuple(subst.get(a, a) if isinstance(a, str) else a for a in args)
    c, other = client(app), client(app)
    name, err = send(c, *args)
    assert name == "error", err
    assert err["code"] == code, err
    assert isinstance(err["reason"], str) and err["reason"]
    assert c.is_connected()
    # the same client then gets a correct result, and another client was never affected
    info = app.extensions["fer"].inference.info
    for cl in (c, other):
        name, res = send(cl, astronaut_jpeg)
        assert name == "result", res
        check_face_result(res, info["labels"], info["members"])
    c.disconnect()
    other.disconnect()


@pytest.mark.parametrize("event,args", [("frame", ("JPEG", "JPEG")), ("photo", ("JPEG",)),
                                        ("frame", ({"a": b"x", "b": [b"y"]},))])
def test_more_attachments_than_the_protocol_allows_end_the_connection(app, astronaut_jpeg, event, args):
    """One binary attachment for 'frame', none elsewhere. A packet declaring more
    ends its connection at once (nothing is buffered); other clients are unaffected, and the client
    may connect again."""
    args = tuple(astronaut_jpeg if a == "JPEG" else a for a in args)
    stats = app.extensions["fer"].stats
    refused = stats.errors.get("bad_packet", 0)
    c, other = client(app), client(app)
    c.emit(event, *args)
    assert not c.is_connected()
    assert [e for e in c.queue if e["name"] in ("result", "error")] == []
    assert stats.errors.get("bad_packet", 0) == refused + 1
    assert send(other, astronaut_jpeg)[0] == "result"
    again = client(app)
    assert send(again, astronaut_jpeg)[0] == "result"
    again.disconnect()
    other.disconnect()


def test_unknown_event(app, astronaut_jpeg):
    c = client(app)
    c.emit("photo", "a text payload")
    (e,) = c.get_received()
    assert e["name"] == "error" and e["args"][0]["code"] == "unknown_event"
    assert send(c, astronaut_jpeg)[0] == "result"
    c.disconnect()


def test_rate_limit_per_client(app, limits, astronaut_jpeg):
    limits(max_fps=2)
    c, other = client(app), client(app)
    # cheap frames (refused by the decoder in a millisecond) so all three fall in one second
    got = [send(c, b"not an image")[1]["code"] for _ in range(3)]
    assert got == ["bad_image", "bad_image", "rate_limited"]
    assert send(other, astronaut_jpeg)[0] == "result"  # limits are per client
    time.sleep(1.05)
    assert send(c, astronaut_jpeg)[0] == "result"  # the window moved on
    c.disconnect()
    other.disconnect()


def gate(app, c):
    """The server-side gate of test client ``c``."""
    sid = app.extensions["socketio"].server.manager.sid_from_eio_sid(c.eio_sid, "/")
    return app.extensions["fer"].gates[sid]


def _worker_pid(app) -> int:
    pid = app.extensions["fer"].inference.pid
    assert pid
    return pid


def _emit_in_thread(c, payload):
    t = threading.Thread(target=c.emit, args=("frame", payload), daemon=True)
    t.start()
    return t


def _wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_second_frame_in_flight_is_busy(app, astronaut_jpeg):
    """The worker is paused (SIGSTOP) so the first frame stays in flight while the second arrives."""
    c = client(app)
    g = gate(app, c)
    pid = _worker_pid(app)
    os.kill(pid, signal.SIGSTOP)
    try:
        t = _emit_in_thread(c, astronaut_jpeg)
        assert _wait_for(lambda: g.in_flight)
        c.emit("frame", astronaut_jpeg)
    finally:
        os.kill(pid, signal.SIGCONT)
    t.join(30)
    got = answers(c)
    assert [n for n, _ in got] == ["error", "result"], got
    assert got[0][1]["code"] == "busy"
    assert send(c, astronaut_jpeg)[0] == "result"
    c.disconnect()


def test_queued_frames_go_as_one_batch_and_a_bad_frame_fails_alone(app, astronaut_jpeg):
    """While the worker is busy, frames from several clients queue; they then go as ONE batch, in
    which a broken frame gets its own error and the others their results."""
    inf = app.extensions["fer"].inference
    clients = [client(app) for _ in range(5)]
    pid = _worker_pid(app)
    batches0 = inf.batches
    os.kill(pid, signal.SIGSTOP)
    threads = []
    try:
        g0 = gate(app, clients[0])
        threads.append(_emit_in_thread(clients[0], astronaut_jpeg))  # goes to the (paused) worker
        assert _wait_for(lambda: g0.in_flight)
        time.sleep(0.3)
        assert inf._q.qsize() == 0 and inf.batches == batches0
        payloads = [astronaut_jpeg, astronaut_jpeg[:700], grey_jpeg(), astronaut_jpeg]
        for cl, p in zip(clients[1:], payloads):
            threads.append(_emit_in_thread(cl, p))
        assert _wait_for(lambda: inf._q.qsize() == 4)
    finally:
        os.kill(pid, signal.SIGCONT)
    for t in threads:
        t.join(30)
    got = [answers(cl) for cl in clients]
    assert all(len(g) == 1 for g in got), got
    (n0, r0), (n1, r1), (n2, r2), (n3, r3), (n4, r4) = [g[0] for g in got]
    assert n0 == "result" and r0["batch"] == 1 and r0["views"] == str(inf.info["tta"])
    # new faces in a full batch: the first of the ensemble's views only (flip's first: none)
    assert n1 == "result" and len(r1["faces"]) == 1 and r1["batch"] == 4 and r1["views"] == "none"
    assert n2 == "error" and r2["code"] == "bad_image"
    assert n3 == "result" and r3["faces"] == [] and r3["batch"] == 4
    assert n4 == "result" and r4["faces"] == r1["faces"]
    assert inf.batches == batches0 + 2
    assert n3 == "result" and r3["views"] == str(inf.info["tta"])  # no face: nothing lighter
    assert app.extensions["fer"].stats.snapshot()["views"]["none"] >= 2
    for cl in clients:
        cl.disconnect()


def test_frames_never_reach_disk_or_logs(app, astronaut_jpeg, caplog, capfd):
    """After frames good and bad: no log record and no output (ours or the worker's) holds frame
    bytes, and no file under the repo or the temp folder was written with them."""
    import logging
    import tempfile
    caplog.set_level(logging.DEBUG)
    marker = astronaut_jpeg[1000:1064]
    since = time.time() - 1
    c = client(app)
    for p in (astronaut_jpeg, astronaut_jpeg[:900], b"junk" * 100, "text"):
        send(c, p)
    c.disconnect()
    out, err = capfd.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [out, err]
    for t in texts:
        assert repr(marker)[2:-1] not in t and base64.b64encode(marker).decode()[:40] not in t
    assert all(len(r.getMessage()) < 500 for r in caplog.records)
    skip = {".git", ".venv", "models", "runs", "node_modules", "__pycache__"}
    for top in (ROOT, Path(tempfile.gettempdir())):
        for dirpath, dirnames, files in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for f in files:
                p = Path(dirpath) / f
                try:
                    if p.is_file() and p.stat().st_mtime >= since and p.stat().st_size < 50_000_000:
                        assert marker not in p.read_bytes(), p
                except OSError:
                    continue


def test_admin_stats_count_frames(app, astronaut_jpeg):
    c = client(app)
    send(c, astronaut_jpeg)
    s = app.test_client().get("/admin/stats").get_json()
    assert s["clients"] >= 1 and s["frames"] >= 1 and s["latency_ms"]["p50"] > 0
    assert s["worker"]["state"] == "ready" and s["worker"]["batches"] >= 1
    c.disconnect()
    assert app.test_client().get("/admin/stats").get_json()["clients"] == s["clients"] - 1


def test_worker_crash_is_reported_and_recovered(app, astronaut_jpeg):
    """Killing the worker mid-frame: that client gets an error, the next frames get 'starting' until
    the dispatcher has started a new worker, then everything works again."""
    inf = app.extensions["fer"].inference
    c, other = client(app), client(app)
    pid = _worker_pid(app)
    restarts = inf.restarts
    g = gate(app, c)
    os.kill(pid, signal.SIGSTOP)
    t = _emit_in_thread(c, astronaut_jpeg)
    assert _wait_for(lambda: g.in_flight)
    time.sleep(0.3)
    assert inf._q.qsize() == 0  # the frame is with the (paused) worker
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    (name, err), = answers(c)
    assert name == "error" and err["code"] == "worker_crashed", err
    name, err = send(other, astronaut_jpeg)
    assert name == "error" and err["code"] == "starting"
    assert app.test_client().get("/healthz").status_code == 503
    assert inf.wait_ready(180), inf.last_error
    assert inf.restarts == restarts + 1 and inf.pid != pid
    for cl in (c, other):
        assert send(cl, astronaut_jpeg)[0] == "result"
    assert app.test_client().get("/healthz").status_code == 200
    c.disconnect()
    other.disconnect()


def test_repeated_violations_disconnect_that_client_only(app, limits, astronaut_jpeg):
    """Oversize frames: an error each; past max_violations within the window, a last 'abuse' error and
    a disconnect. Another client is served throughout, and the offender may connect again."""
    limits(max_violations=3)
    c, other = client(app), client(app)
    g = gate(app, c)
    sid = next(s for s, v in app.extensions["fer"].gates.items() if v is g)
    big = astronaut_jpeg + b"\0" * (1_000_001 - len(astronaut_jpeg))
    for _ in range(3):
        assert send(c, big)[1]["code"] == "too_large"
        assert c.is_connected()
    c.emit("frame", big)
    assert not c.is_connected()
    got = [(e["name"], e["args"][0]["code"]) for e in c.queue]  # get_received() refuses once disconnected
    assert got == [("error", "too_large"), ("error", "abuse")], got
    assert sid not in app.extensions["fer"].gates
    assert send(other, astronaut_jpeg)[0] == "result"
    s = app.test_client().get("/admin/stats").get_json()
    assert s["errors"].get("abuse", 0) >= 1
    again = client(app)
    assert send(again, astronaut_jpeg)[0] == "result"
    again.disconnect()
    other.disconnect()


def test_violations_spread_out_are_tolerated(app, limits, astronaut_jpeg):
    limits(max_violations=2, violation_window=0.5)
    c = client(app)
    for _ in range(5):
        assert send(c, "not binary")[1]["code"] == "bad_frame"
        time.sleep(0.3)
    assert c.is_connected() and send(c, astronaut_jpeg)[0] == "result"
    c.disconnect()


def test_fairness_under_load(app, limits, astronaut_jpeg):
    """Clients sending as fast as their answers come, all at once: the queue is FIFO and each client
    has one frame in it at most, so each gets about the same share; none is starved. One of them
    sends costly 1280 px frames: it slows every batch it is in, yet gets its share too."""
    import cv2
    from skimage import data
    limits(max_fps=10_000)
    big = cv2.imencode(".jpg", cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 1280)))[1].tobytes()
    clients = [client(app) for _ in range(6)]
    counts = [0] * len(clients)
    failures = []
    end = time.monotonic() + 4.0

    def run(i, c):
        frame = big if i == 0 else astronaut_jpeg
        while time.monotonic() < end:
            name, res = send(c, frame)
            if name != "result" or len(res["faces"]) != 1:
                failures.append(res)
                return
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    assert min(counts) >= 0.6 * max(counts) and min(counts) >= 5, counts
    for c in clients:
        c.disconnect()


# -- "Why?": what the network saw, and why (docs/protocol.md 'why') -------------

def why(c, payload, *args):
    """Emit 'why' and return its one answer: ('why_result' | 'why_error', payload)."""
    c.emit("why", payload, *args)
    got = [(e["name"], e["args"][0]) for e in c.get_received() if e["name"] in ("why_result", "why_error")]
    assert len(got) == 1, got
    return got[0]


def _b64_array(s):
    return np.frombuffer(base64.b64decode(s), np.uint8).reshape(48, 48)


def _explainer_pid(app) -> int:
    pid = app.extensions["fer"].explainer.pid
    assert pid
    return pid


def test_why_shows_the_crop_the_members_saw_and_the_maps(app, limits, astronaut_jpeg):
    """The answer holds the exact 48x48 crop of the main face (the detector's, as the frame path
    crops it), the ensemble's label for it and a map per member and for the ensemble; it goes to
    the asking client only, and that client's frames go on as before."""
    from fer_core.faces import decode_image, find_faces, make_detector
    limits(why_interval=0)
    c, other = client(app), client(app)
    name, res = why(c, astronaut_jpeg)
    assert name == "why_result", res
    info = app.extensions["fer"].inference.info
    detector = make_detector(app.extensions["fer"].config.detector)  # the server's own
    _, crops = find_faces(decode_image(astronaut_jpeg, grey=True), detector)
    np.testing.assert_array_equal(_b64_array(res["crop"]), crops[0])
    assert res["size"] == 48 and res["width"] == 320 and res["height"] == 320 and res["ms"] > 0
    assert res["label"] == max(res["probabilities"], key=res["probabilities"].get)
    assert list(res["probabilities"]) == info["labels"] and sorted(res["members"]) == sorted(info["members"])
    # the frame path gives the same face the same answer
    _, frame = send(client(app), astronaut_jpeg)
    assert frame["faces"][0]["box"] == res["box"] and frame["faces"][0]["label"] == res["label"]
    maps = [res["maps"]["ensemble"], *res["maps"]["members"].values()]
    assert sorted(res["maps"]["members"]) == sorted(info["members"])
    for m in maps:
        a = _b64_array(m)
        assert a.max() == 255 and a.min() < 255  # scaled to its maximum, and not uniform
    assert other.get_received() == []  # nobody else hears of it
    assert send(c, astronaut_jpeg)[0] == "result"
    # a page opened now is told that the explainer is loaded: its first Why? is not a long one
    late = app.extensions["socketio"].test_client(app)
    assert late.get_received()[0]["args"][0]["why_ready"] is True
    late.disconnect()
    c.disconnect()
    other.disconnect()


def test_why_is_rate_limited_per_client(app, limits, astronaut_jpeg):
    limits(why_interval=60)
    c, other = client(app), client(app)
    assert why(c, astronaut_jpeg)[0] == "why_result"
    name, err = why(c, astronaut_jpeg)
    assert name == "why_error" and err["code"] == "rate_limited", err
    assert 55 < err["retry_after"] <= 60 and "60 s" in err["reason"]
    assert why(other, astronaut_jpeg)[0] == "why_result"  # the limit is per client
    assert send(c, astronaut_jpeg)[0] == "result"  # and frames have their own
    c.disconnect()
    other.disconnect()


def test_why_without_a_face_or_with_a_bad_payload(app, limits, astronaut_jpeg):
    limits(why_interval=0)
    c = client(app)
    for payload, code in ((grey_jpeg(), "no_face"), (b"not an image", "bad_image"), ("text", "bad_frame"),
                          (b"", "empty"), (astronaut_jpeg + b"\0" * 1_000_001, "too_large")):
        name, err = why(c, payload)
        assert name == "why_error" and err["code"] == code and err["reason"], (code, err)
    assert why(c, astronaut_jpeg)[0] == "why_result"
    c.disconnect()


def test_why_when_explanations_are_off(app, monkeypatch, astronaut_jpeg):
    monkeypatch.setattr(app.extensions["fer"], "explainer", None)
    c = app.extensions["socketio"].test_client(app)
    (hello,) = c.get_received()
    assert hello["args"][0]["why_interval"] is None
    name, err = why(c, astronaut_jpeg)
    assert name == "why_error" and err["code"] == "unavailable"
    c.disconnect()


def _why_in_thread(c, payload):
    t = threading.Thread(target=c.emit, args=("why", payload), daemon=True)
    t.start()
    return t


@contextlib.contextmanager
def _why_held(app, c, payload):
    """A 'why' of ``c`` held in flight for the block (the explainer paused with SIGSTOP); afterwards
    the explainer goes on and that 'why' is answered."""
    assert why(c, payload)[0] == "why_result"  # the explainer is up
    g = gate(app, c)
    pid = _explainer_pid(app)
    os.kill(pid, signal.SIGSTOP)
    try:
        t = _why_in_thread(c, payload)
        assert _wait_for(lambda: g.why.in_flight)
        yield g
    finally:
        os.kill(pid, signal.SIGCONT)
    t.join(30)
    assert [e["name"] for e in c.get_received()] == ["why_result"]


def test_one_why_in_flight_per_client(app, limits, astronaut_jpeg):
    """The explainer is paused (SIGSTOP) so the first 'why' stays in flight while the second arrives."""
    limits(why_interval=0)
    c = client(app)
    with _why_held(app, c, astronaut_jpeg):
        c.emit("why", astronaut_jpeg)
        assert [(e["name"], e["args"][0]["code"]) for e in c.get_received()] == [("why_error", "busy")]
    c.disconnect()


def test_frames_are_answered_while_a_why_is_computed(app, limits, astronaut_jpeg):
    """The explainer is a process of its own: while it is held (SIGSTOP) in the middle of a 'why',
    another client's frames, and the asking client's own, are answered as usual."""
    limits(why_interval=0)
    c, other = client(app), client(app)
    with _why_held(app, c, astronaut_jpeg) as g:
        time.sleep(0.3)
        assert g.why.in_flight  # still computing (held)
        for _ in range(5):
            name, res = send(other, astronaut_jpeg)
            assert name == "result" and len(res["faces"]) == 1
        assert g.why.in_flight
    c.disconnect()
    other.disconnect()


def test_explanations_never_reach_logs(app, limits, astronaut_jpeg, caplog, capfd):
    import logging
    caplog.set_level(logging.DEBUG)
    limits(why_interval=0)
    c = client(app)
    name, res = why(c, astronaut_jpeg)
    assert name == "why_result"
    c.disconnect()
    out, err = capfd.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [out, err]
    for secret in (res["crop"][:40], res["maps"]["ensemble"][:40]):
        assert not any(secret in t for t in texts)

"""Over capacity (webapp/seats.py): the first max_clients clients are served, later ones wait in line
and get 'full' with their place, first come first served; /admin, /admin/stats and /metrics say so."""
from __future__ import annotations

import pytest

from test_webapp import make_app
from harness.server import grey_jpeg


def connect(app):
    c = app.extensions["socketio"].test_client(app)
    assert c.is_connected()
    hello = [e for e in c.get_received() if e["name"] == "hello"]
    return c, hello[0]["args"][0]["line"]


def answer(c, event="frame", payload=None):
    c.emit(event, payload or grey_jpeg())
    got = [e["args"][0] for e in c.get_received() if e["name"] in ("error", "result", "why_error")]
    assert len(got) == 1, got
    return got[0]


def test_over_capacity_clients_wait_in_line_first_come_first_served(tiny_models):
    app = make_app(tiny_models, max_clients=2, full_retry=1.5)  # no worker: a served frame gets 'unavailable'
    (a, la), (b, lb), (c, lc), (d, ld) = (connect(app) for _ in range(4))
    assert (la, lb, lc, ld) == (0, 0, 1, 2)
    assert answer(a)["code"] == "unavailable"  # served: its frame went on to the (absent) worker
    full = answer(d)
    assert (full["code"], full["position"], full["retry_after"]) == ("full", 2, 1.5) and "number 2" in full["reason"]
    stats = app.test_client().get("/admin/stats").get_json()
    assert stats["seats"] == {"limit": 2, "served": 2, "waiting": 2, "over_capacity": True}
    assert "over capacity: 2 waiting" in app.test_client().get("/admin").get_data(as_text=True)
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "fer_clients_waiting 2.0" in metrics and 'fer_frame_errors_total{code="full"} 1.0' in metrics
    b.disconnect()  # a seat frees: the first in line (c) takes it, d moves up
    assert answer(c)["code"] == "unavailable"
    assert answer(d)["position"] == 1
    for _ in range(30):  # 'full' is no protocol violation: a waiting page is never disconnected for it
        assert answer(d)["code"] == "full"
    assert d.is_connected()
    d.disconnect()
    a.disconnect()
    c.disconnect()
    assert app.test_client().get("/admin/stats").get_json()["seats"]["over_capacity"] is False


def test_no_limit_and_bad_settings(tiny_models):
    from webapp.config import WebConfig
    from webapp.seats import Seats
    s = Seats(0)
    assert [s.arrive(i) for i in range(100)] == [0] * 100 and s.snapshot()["limit"] is None
    assert WebConfig.from_env({"FER_MAX_CLIENTS": "5"}).max_clients == 5 and WebConfig().max_clients == 60
    with pytest.raises(ValueError, match="got -1"):
        WebConfig(max_clients=-1)
    with pytest.raises(ValueError, match="got -1"):
        Seats(-1)

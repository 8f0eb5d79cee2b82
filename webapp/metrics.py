"""Prometheus metrics at ``/metrics`` (the ``prometheus_client`` text format), under the access rule of
/admin/stats (webapp/admin.py: open on localhost, else HTTP Basic with FER_ADMIN_SECRET).

Each app has its own ``CollectorRegistry`` (at ``app.extensions['fer_metrics']``): two apps in one
process, as the tests make, never share a series. What the server already counts (webapp/stats.py,
the inference clients) is read when Prometheus scrapes; what has a distribution is observed as it
happens, into histograms:

=====================================  ========================================================================
``fer_frames_total``                   frames answered with a result (counter)
``fer_faces_total``                    faces in those answers (counter)
``fer_frame_errors_total{code}``       frames and 'why' requests answered with an error, by its code (counter)
``fer_clients``                        Socket.IO clients connected (gauge)
``fer_clients_waiting``                those of them waiting in line over ``max_clients`` (gauge)
``fer_queue_frames{role}``             requests waiting for the worker (gauge; role frames or explain)
``fer_worker_up{role}``                1 while that worker is ready to answer, else 0 (gauge)
``fer_worker_restarts_total{role}``    workers replaced after a crash, a hang or silence (counter)
``fer_runtime_info{runtime,...}``      1, labelled with the runtime and precision serving and how chosen
``fer_runtime_timing_seconds{...}``    the start-up timing of each candidate that chose it, per call
``fer_frame_latency_seconds``          a frame's time in the server, arrival to answer (histogram)
``fer_stage_latency_seconds{stage}``   per batch stage: ``queue`` (a frame's wait before its batch is sent),
                                       ``worker`` (the batch in the worker process), ``model`` (the ensemble
                                       calls within it), ``roundtrip`` (sent to answered) (histogram)
``fer_batch_frames``                   frames per batch sent to the worker (histogram)
=====================================  ========================================================================

Counters restart from zero when the server restarts, as Prometheus's ``rate()`` expects. With several
server processes (FER_MESSAGE_QUEUE) each serves its own numbers: scrape every one of them.
"""
from __future__ import annotations

from flask import Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .admin import require_admin

# Seconds. A frame takes 20-60 ms alone and up to a second or two behind a full class's queue
# (docs/benchmarks.md); the request timeout is 30 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
# Frames per batch: 1 alone, up to max_batch_frames (16 by default) under load.
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)
STAGES = ("queue", "worker", "model", "roundtrip")


class _ServerCollector:
    """Reads the app's counters at scrape time: nothing is counted twice."""

    def __init__(self, state):
        self.state = state

    def collect(self):
        st = self.state
        snap = st.stats.snapshot()
        yield CounterMetricFamily("fer_frames", "Frames answered with a result.", value=snap["frames"])
        yield CounterMetricFamily("fer_faces", "Faces in the answered frames.", value=snap["faces"])
        errors = CounterMetricFamily("fer_frame_errors", "Requests answered with an error, by its code.",
                                     labels=["code"])
        for code, n in sorted(snap["errors"].items()):
            errors.add_metric([code], n)
        yield errors
        yield GaugeMetricFamily("fer_clients", "Socket.IO clients connected.", value=snap["clients"])
        yield GaugeMetricFamily("fer_clients_waiting", "Clients waiting in line for a seat (over max_clients).",
                                value=st.seats.snapshot()["waiting"])
        queued = GaugeMetricFamily("fer_queue_frames", "Requests waiting for the worker.", labels=["role"])
        up = GaugeMetricFamily("fer_worker_up", "1 while the worker is ready to answer.", labels=["role"])
        restarts = CounterMetricFamily("fer_worker_restarts", "Workers replaced after a crash, a hang or silence.",
                                       labels=["role"])
        for role, client in (("frames", st.inference), ("explain", st.explainer)):
            if client is None:
                continue
            s = client.status()
            queued.add_metric([role], s["queued"])
            up.add_metric([role], 1 if client.ready and client.responsive else 0)
            restarts.add_metric([role], s["restarts"])
        yield queued
        yield up
        yield restarts
        info = (st.inference.info if st.inference is not None else None) or {}
        choice = info.get("runtime_choice") or {}
        runtime = GaugeMetricFamily("fer_runtime_info", "The runtime serving the ensemble (value 1).",
                                    labels=["runtime", "precision", "how"])
        timing = GaugeMetricFamily("fer_runtime_timing_seconds", "Start-up timing of each candidate runtime: "
                                   "median seconds per call of the timing batch.", labels=["runtime", "precision"])
        if info.get("runtime"):
            runtime.add_metric([info["runtime"], info.get("precision") or "", choice.get("how") or ""], 1)
        for name, ms in sorted((choice.get("timings_ms") or {}).items()):
            r, _, p = name.partition("/")
            timing.add_metric([r, p], ms / 1000)
        yield runtime
        yield timing


class Metrics:
    """The app's registry and the histograms that the stats and the inference client feed."""

    def __init__(self, state):
        self.registry = CollectorRegistry()
        self.registry.register(_ServerCollector(state))
        self.frame_latency = Histogram("fer_frame_latency_seconds", "A frame's time in the server, arrival to answer.",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage_latency = Histogram("fer_stage_latency_seconds", "Time per stage of a batch of frames.",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_frames = Histogram("fer_batch_frames", "Frames per batch sent to the worker.",
                                      buckets=BATCH_BUCKETS, registry=self.registry)
        for stage in STAGES:  # every series from the start: alerts see 0, not 'no data'
            self.stage_latency.labels(stage)

    def frame(self, ms: float, faces: int) -> None:
        self.frame_latency.observe(ms / 1000)

    def batch(self, report: dict) -> None:
        """One batch answered by the frames worker: ``report`` from InferenceClient (seconds)."""
        self.batch_frames.observe(report["frames"])
        for wait in report["queue_s"]:
            self.stage_latency.labels("queue").observe(wait)
        self.stage_latency.labels("roundtrip").observe(report["roundtrip_s"])
        for stage in ("worker", "model"):
            if report.get(f"{stage}_s") is not None:
                self.stage_latency.labels(stage).observe(report[f"{stage}_s"])

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def init_app(app) -> Metrics:
    """Attach the metrics to ``app`` (after its AppState exists) and serve them at /metrics."""
    st = app.extensions["fer"]
    m = app.extensions["fer_metrics"] = Metrics(st)
    st.stats.observers.append(m.frame)
    if st.inference is not None:
        st.inference.observers.append(m.batch)

    @require_admin
    def metrics():
        return current_app.extensions["fer_metrics"].render()

    app.add_url_rule("/metrics", "metrics", metrics)
    return m

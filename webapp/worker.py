"""The inference worker: the only process of the web app that imports TensorFlow.

    python -m webapp.worker CONFIG_JSON [--heartbeat-fd FD] [--explain]
        # CONFIG_JSON: a webapp.config.WorkerConfig, as InferenceClient starts it; FD: webapp/heartbeat.py

It loads the ensemble once, warms it up, reports ``ready`` on stdout, then answers batches of frames
read from stdin (see ``webapp.wire``): a thin adapter between the wire and ``fer_core.pipeline``
(``FramePipeline``: faces found, followed per client, cropped, all faces of the batch through ONE
ensemble call). A frame that cannot be used gets its own error; the rest of its batch is answered as
usual. Frames live in memory only: nothing is written to disk, and log lines (stderr) never carry
image data. End of stdin ends the worker.

A frame whose request asks ``{"crop": true}`` (a 'why' request) also gets ``crop``: its main face's
48x48 grey crop, base64, exactly what the members classified (before the test-time views).

With ``--explain`` it is the explainer instead (fer_core/explain.py): it lowers its own priority
(``explain_nice``) before loading anything, loads the members in Keras, and answers batches of
48x48 crops (raw uint8 bytes, ``meta`` ``{"class": i}``) with Grad-CAM maps, base64 uint8 (0..255),
the ensemble's and each member's.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from webapp.config import WorkerConfig


def parse_args(argv=None) -> tuple[WorkerConfig, int, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the worker's settings as JSON (webapp.config.WorkerConfig)")
    p.add_argument("--heartbeat-fd", type=int, default=-1, help="write a heartbeat byte to this fd (webapp/heartbeat.py)")
    p.add_argument("--explain", action="store_true", help="be the explainer: Grad-CAM maps of 48x48 crops")
    args = p.parse_args(argv)
    try:
        return WorkerConfig.from_json(args.config), args.heartbeat_fd, args.explain
    except ValueError as e:
        p.error(str(e))


def log(msg: str) -> None:
    print(f"[fer-worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def answer_batch(pipeline, ids, frames, clients=None, metas=None) -> list[dict]:
    """Per-frame results in ``ids`` order (docs/protocol.md): {id, faces, width, height, views,
    spread[, crop]} or {id, error, code}. ``clients``: one key per frame (None: searched whole), each
    client's faces followed by its own tracker (fer_core/pipeline.py); ``metas``: one dict per frame,
    ``{"crop": true}`` for a 'why' frame, whose result adds its main face's 48x48 crop (base64 of the
    uint8 bytes). Lists of another length than ``frames`` are ignored, as a client cannot set them."""
    n = len(frames)
    streams = clients if clients and len(clients) == n else None
    explained = [bool(m and m.get("crop")) for m in metas] if metas and len(metas) == n else None
    return [_wire_result(rid, r) for rid, r in zip(ids, pipeline.process(frames, streams, explained))]


def _wire_result(rid, r) -> dict:
    """A ``fer_core.pipeline.FrameResult`` as the wire carries it, under request id ``rid``."""
    import base64

    import numpy as np

    if r.error is not None:
        return {"id": rid, "error": r.error, "code": r.code}
    out = {"id": rid, "faces": r.faces, "width": r.width, "height": r.height, "views": r.views, "spread": r.spread}
    if r.crop is not None:
        out["crop"] = base64.b64encode(np.ascontiguousarray(r.crop, dtype=np.uint8).tobytes()).decode()
    return out


def explain_batch(explainer, ids, crops, metas) -> list[dict]:
    """Per-crop answers in ``ids`` order: {id, maps: {ensemble, members: {name: map}}} with each map
    base64 uint8 48x48 (0..255), or {id, error, code} for a request that is not a crop and a class."""
    import base64

    import numpy as np

    def b64(m):
        return base64.b64encode(np.round(m * 255).astype(np.uint8).tobytes()).decode()

    out, good = [], []
    metas = metas if metas and len(metas) == len(ids) else [{}] * len(ids)
    for k, (rid, data, meta) in enumerate(zip(ids, crops, metas)):
        cls = (meta or {}).get("class")
        if len(data) != 48 * 48 or type(cls) is not int or not 0 <= cls < len(explainer.labels):
            out.append({"id": rid, "error": f"expected 2304 bytes and a class in 0..{len(explainer.labels) - 1}, "
                                            f"got {len(data)} bytes and {cls!r}", "code": "internal"})
            continue
        out.append({"id": rid})
        good.append((k, np.frombuffer(data, np.uint8).reshape(48, 48), cls))
    if good:
        try:
            ens, members = explainer.explain(np.stack([g[1] for g in good]), np.array([g[2] for g in good]))
        except Exception as e:  # noqa: BLE001 - the requests fail, the explainer lives on
            log(f"explanation failed: {type(e).__name__}")  # the type only: a message could quote tensor values
            for k, _, _ in good:
                out[k] = {"id": out[k]["id"], "error": "the explanation failed", "code": "internal"}
            return out
        for j, (k, _, _) in enumerate(good):
            out[k]["maps"] = {"ensemble": b64(ens[j]),
                              "members": {n: b64(members[m, j]) for m, n in enumerate(explainer.member_names)}}
    return out


def load_explainer(cfg: WorkerConfig):
    """The explainer (fer_core/explain.py), warmed up, and what its ``ready`` message says."""
    from fer_core.explain import Explainer
    explainer = Explainer(cfg.models_dir, tta=cfg.tta)
    explainer.warm_up()
    log(f"explainer: {len(explainer.member_names)} members ({', '.join(explainer.layers)}), nice {os.nice(0)}")
    return explainer, {"labels": explainer.labels, "members": explainer.member_names, "layers": explainer.layers,
                       "tta": explainer.tta}


def load_pipeline(cfg: WorkerConfig):
    """The frame pipeline (fer_core/pipeline.py) on the warmed-up ensemble, and what its ``ready``
    message says."""
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    pred = Predictor(cfg.models_dir, tta=cfg.tta, runtime=cfg.runtime, precision=cfg.precision,
                     threads=cfg.tf_threads, detector=cfg.detector, detector_threads=cfg.detector_threads)
    pred.warm_up(cfg.warm_up_faces)
    from fer_core.runtime import Timed
    pred.runner = Timed(pred.runner)  # each batch reports its model time (webapp/metrics.py)
    pipeline = FramePipeline(pred, max_faces=cfg.max_faces, max_pixels=cfg.max_pixels, track_every=cfg.track_every,
                             track_still=cfg.track_still, spread_views=cfg.spread_views,
                             one_view_from=cfg.one_view_from, prep_chunks=cfg.prep_chunks)
    log(f"{len(pred.member_names)} members from {pred.models_dir} in {pred.runtime} {pred.precision}")
    if pred.choice is not None:  # the measured runtime, the timings that chose it, why the others do not serve
        log(pred.choice.describe())
    return pipeline, {"labels": pred.labels, "members": pred.member_names, "models_dir": str(pred.models_dir),
                      "rule": pred.spec.get("rule"), "tta": pred.tta, "track_every": cfg.track_every,
                      "detector": cfg.detector, "runtime": pred.runtime, "precision": pred.precision,
                      "prep_chunks": cfg.prep_chunks, "spread_views": pipeline.spread_views,
                      "track_still": cfg.track_still, "one_view_from": cfg.one_view_from,
                      "runtime_choice": pred.choice.as_dict() if pred.choice is not None else None}


def serve(load, answer, proto_in, proto_out, model_s=None) -> int:
    """A worker's life: ``load()`` (TensorFlow's threads already capped) gives the engine and its
    ``ready`` fields, or the error reported as ``fatal`` (the web process shows it on /healthz);
    then every ``batch`` read is answered by ``answer(engine, header, blobs)`` until stdin closes.
    Each answer carries its ``timing`` in ms: the worker's, and the model's where ``model_s(engine)``
    gives the seconds spent in the model so far."""
    from webapp import wire
    t0 = time.perf_counter()
    try:
        engine, ready = load()
    except Exception as e:  # noqa: BLE001 - reported to the web process, which answers 'unavailable'
        reason = f"{type(e).__name__}: {e}"
        log(f"cannot load: {reason}")
        wire.write_message(proto_out, {"type": "fatal", "reason": reason})
        return 1
    load_s = time.perf_counter() - t0
    log(f"ready in {load_s:.1f} s")
    wire.write_message(proto_out, dict(ready, type="ready", load_s=round(load_s, 2), pid=os.getpid()))
    while True:
        try:
            header, blobs = wire.read_message(proto_in)
        except wire.WireError:
            return 0  # the web process closed our stdin (or died): done
        if header.get("type") != "batch":
            log(f"unknown message type {header.get('type')!r}")
            continue
        t, busy = time.perf_counter(), model_s(engine) if model_s else 0.0
        results = answer(engine, header, blobs)
        timing = {"worker": round((time.perf_counter() - t) * 1000, 3)}
        if model_s:
            timing["model"] = round((model_s(engine) - busy) * 1000, 3)
        try:
            wire.write_message(proto_out, {"type": "results", "results": results, "timing": timing})
        except (BrokenPipeError, OSError):
            return 0


def main(argv=None) -> int:
    cfg, heartbeat_fd, explaining = parse_args(argv)
    # The protocol owns the real stdout; anything else printing to fd 1 (Python or C code) goes to stderr.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Ctrl-C in a terminal, or a SIGTERM to the server's process group, reaches us too: the web
    # process decides when we stop (it answers the frames we hold first, webapp/lifecycle.py).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if explaining and cfg.explain_nice:  # before any thread starts: TensorFlow's threads inherit it
        os.nice(cfg.explain_nice)
    if heartbeat_fd >= 0:  # first: loading TensorFlow takes a while, and we are alive meanwhile
        from webapp import heartbeat
        heartbeat.beat(heartbeat_fd)
    import logging
    # fer_core's warnings (a frame or a batch that failed) in the worker's own log lines
    logging.basicConfig(level=logging.WARNING, format=f"[fer-worker {os.getpid()}] %(message)s", stream=sys.stderr)
    from fer_core import quiet
    quiet.load_backend()  # TensorFlow's start-up lines are noise in the server log (FER_VERBOSE=1 shows them)
    import warnings
    # Pillow warns about images over 89 M pixels; decode_image refuses anything over max_pixels anyway.
    warnings.filterwarnings("ignore", message=r"Image size .* could be decompression bomb")

    def load():
        if cfg.tf_threads > 0:  # before TensorFlow's runtime starts, i.e. before any model is built
            import tensorflow as tf
            tf.config.threading.set_intra_op_parallelism_threads(cfg.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.tf_threads)
        return load_explainer(cfg) if explaining else load_pipeline(cfg)

    if explaining:
        return serve(load, lambda ex, h, blobs: explain_batch(ex, h.get("ids", []), blobs, h.get("meta")),
                     sys.stdin.buffer, proto_out)
    return serve(load, lambda pipe, h, blobs: answer_batch(pipe, h.get("ids", []), blobs, h.get("clients"),
                                                           h.get("meta")), sys.stdin.buffer, proto_out,
                 model_s=lambda pipe: pipe.predictor.runner.busy_s)


if __name__ == "__main__":
    sys.exit(main())

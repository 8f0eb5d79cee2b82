"""The inference worker: the only process of the web app that imports TensorFlow.

    python -m webapp.worker CONFIG_JSON [--heartbeat-fd FD] [--explain]
        # CONFIG_JSON: a webapp.config.WorkerConfig, as InferenceClient starts it; FD: webapp/heartbeat.py

It loads the ensemble once, warms it up, reports ``ready`` on stdout, then answers batches of frames
read from stdin (see ``webapp.wire``): every frame is decoded, its faces found and cropped, and all
faces of the batch go through ONE ensemble call. A frame that cannot be used gets its own error; the
rest of its batch is answered as usual. Frames live in memory only: nothing is written to disk, and
log lines (stderr) never carry image data. End of stdin ends the worker.

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
from typing import NamedTuple

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


class Prepared(NamedTuple):
    """One frame made ready for the ensemble: ``result`` (without faces yet, or the frame's error),
    its faces' ``boxes`` and 48x48 ``crops`` (None after an error), and for a followed frame the
    tracker's ``notes`` about each face with the stream's ``frame`` number (fer_core/spread.py)."""
    result: dict
    boxes: list | None = None
    crops: object = None
    notes: list | None = None
    frame: int = 0


def prepare(data: bytes, detector, max_faces: int, max_pixels: int, tracker=None) -> Prepared:
    """One frame decoded, its faces found and cropped, or its error result. With a ``tracker``
    (fer_core.track, the client's own), faces are followed from the client's last frame.
    Crops are levelled on the eyes where the detector gives them (fer_core.faces.align_crop)."""
    from fer_core.faces import ImageError, crop_faces, decode_image, find_faces
    from fer_core.track import box_of
    notes = None
    try:
        img = decode_image(data, max_pixels=max_pixels, grey=True)  # detection and crops need grey only
        if tracker is None:
            boxes, crops = find_faces(img, detector, max_faces=max_faces)
        else:
            tracker.update(img)
            # this frame's eyes where the detector gives them (or, for a face that did not move, its last search's)
            faces = tracker.current_faces()[:max_faces]
            boxes = [box_of(f) for f in faces]
            crops = crop_faces(img, faces)
            notes = tracker.notes_of()[:max_faces]
    except ImageError as e:
        return Prepared({"error": str(e), "code": "bad_image"})
    except Exception as e:  # noqa: BLE001 - one odd frame must not end the batch
        log(f"frame failed: {type(e).__name__}")
        return Prepared({"error": "the frame could not be processed", "code": "internal"})
    return Prepared({"faces": [], "width": int(img.shape[1]), "height": int(img.shape[0])}, boxes, crops,
                    notes, tracker.frames if tracker is not None else 0)


def handle_batch(pred, ids, frames, max_faces: int, max_pixels: int, clients=None, trackers=None,
                 prep_pool=None, chunks: int = 4, load_views_from: int = 0, metas=None,
                 spread: bool = False) -> list[dict]:
    """Per-frame results in ``ids`` order: {id, faces, width, height, views, spread} or {id, error}.

    Frames are decoded and searched for faces by one thread only (a CascadeClassifier, like
    BlazeFace's LiteRT interpreter, must not be shared between threads), then their faces go
    through the ensemble. ``clients`` (one key per frame, or None) with ``trackers``
    (fer_core.track.Trackers) follows each client's faces instead of searching anew. ``metas`` (one
    dict per frame, or None): ``{"crop": true}`` adds the main face's crop to that frame's result.

    With ``prep_pool`` (a one-thread executor), the batch is cut into up to ``chunks`` parts, and
    while the ensemble runs on one part's faces, the pool prepares the next part, so that both cores
    stay busy (docs/benchmarks.md). Without it, every frame is prepared first and all faces of the
    batch go through one ensemble call.

    Views (fer_core.tta, the predictor's): with ``spread`` a followed face gets one view a frame and
    its answer averages it with the views of its last frame (fer_core/spread.py); other faces get
    every view. A batch of ``load_views_from`` frames or more (0: never) means clients are waiting:
    each face then gets one view at most, a face without recent views the first
    (``tta.first_view``), and its frame's ``views`` says so."""
    now = time.monotonic()
    n = len(frames)
    one = 0 < load_views_from <= n
    clients = clients if trackers is not None and clients and len(clients) == n else [None] * n

    def prep(lo, hi):
        return [prepare(frames[k], pred.detector, max_faces, max_pixels,
                        trackers.get(clients[k], now) if clients[k] is not None else None) for k in range(lo, hi)]

    crop = [bool(m and m.get("crop")) for m in metas] if metas and len(metas) == n else [False] * n
    if prep_pool is None or n < 2 or chunks < 2:
        return _classify(pred, ids, prep(0, n), crop, one, spread, now)
    size = -(-n // chunks)
    parts = [(lo, prep_pool.submit(prep, lo, min(n, lo + size))) for lo in range(0, n, size)]
    out = []
    for lo, fut in parts:
        prepared = fut.result()
        k = len(prepared)
        out += _classify(pred, ids[lo:lo + k], prepared, crop[lo:lo + k], one, spread, now)
    return out


def _classify(pred, ids, prepared, crop, one: bool, spread: bool, now: float) -> list[dict]:
    """Results for prepared frames: every view their faces need through one ensemble call.
    ``crop[k]``: frame k also gets its main face's 48x48 crop (base64 of the uint8 bytes). ``one``:
    a view per face at most; ``spread``: followed faces spread their views over frames."""
    import base64

    import numpy as np

    from fer_core import tta
    from fer_core.spread import FaceViews

    n_views = tta.n_views(pred.tta)
    out, found = [], []  # found: (index in out, Prepared, first face's index in crops)
    faces = 0
    for fid, p in zip(ids, prepared):
        out.append(dict(p.result, id=fid))
        if p.boxes:
            found.append((len(out) - 1, p, faces))
            faces += len(p.boxes)
    for r in out:
        if "error" not in r:
            r.update(views=str(pred.tta), spread=False)
    if not found:
        return out
    crops = np.concatenate([p.crops for _, p, _ in found])
    plans = []  # per face: (its FaceViews, its stream's frame number, views to compute)
    for i, p, _ in found:
        for k in range(len(p.boxes)):
            if spread and p.notes:
                if "views" not in p.notes[k]:
                    p.notes[k]["views"] = FaceViews(n_views)
                memo = p.notes[k]["views"]
            else:  # no history: every view, or the first under load, and their mean
                memo = FaceViews(n_views)
            # a 'why' frame: its answer and crop are this frame's alone (all views)
            todo = list(range(n_views)) if crop[i] else memo.plan(p.frame, now, one)
            plans.append((memo, p.frame, todo))
    picks = [(i, j) for i, (_, _, todo) in enumerate(plans) for j in todo]
    try:
        got = pred.view_probs(crops, picks)  # one call for every view of every face of these frames
    except Exception as e:  # noqa: BLE001
        log(f"inference failed: {type(e).__name__}: {e}")
        for i, _, _ in found:
            out[i] = {"id": out[i]["id"], "error": "inference failed", "code": "internal"}
        return out
    member_probs, used, earlier, at = [], [], [], 0
    for memo, frame, todo in plans:
        mp, k, e = memo.record(frame, now, dict(zip(todo, got[at:at + len(todo)])))
        at += len(todo)
        member_probs.append(mp)
        used.append(k)
        earlier.append(e)
    member_probs = np.stack(member_probs)
    probs = pred.combine(member_probs)
    for i, p, start in found:
        end = start + len(p.boxes)
        out[i]["faces"] = pred.describe(probs[start:end], member_probs[start:end], p.boxes)
        if min(used[start:end]) < n_views:
            out[i]["views"] = str(tta.first_view(pred.tta))  # a face of it got its first view only
        out[i]["spread"] = any(earlier[start:end])
        if crop[i]:  # faces come largest first: p.crops[0] is the main face
            out[i]["crop"] = base64.b64encode(np.ascontiguousarray(p.crops[0], dtype=np.uint8).tobytes()).decode()
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


def serve_explanations(cfg: WorkerConfig, proto_in, proto_out) -> int:
    """The explainer's life: load the members in Keras (with TensorFlow's threads capped before it
    starts), report ready, answer batches of crops until stdin closes."""
    from webapp import wire
    t0 = time.perf_counter()
    try:
        import tensorflow as tf
        if cfg.tf_threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.tf_threads)
        from fer_core.explain import Explainer
        explainer = Explainer(cfg.models_dir, tta=cfg.tta)
        explainer.warm_up()
    except Exception as e:  # noqa: BLE001 - reported to the web process, which answers 'unavailable'
        reason = f"{type(e).__name__}: {e}"
        log(f"cannot load the explainer: {reason}")
        wire.write_message(proto_out, {"type": "fatal", "reason": reason})
        return 1
    load_s = time.perf_counter() - t0
    log(f"explainer ready: {len(explainer.member_names)} members ({', '.join(explainer.layers)}), "
        f"nice {os.nice(0)}, in {load_s:.1f} s")
    wire.write_message(proto_out, {"type": "ready", "labels": explainer.labels, "members": explainer.member_names,
                                   "layers": explainer.layers, "tta": explainer.tta, "load_s": round(load_s, 2),
                                   "pid": os.getpid()})
    while True:
        try:
            header, blobs = wire.read_message(proto_in)
        except wire.WireError:
            return 0
        if header.get("type") != "batch":
            log(f"unknown message type {header.get('type')!r}")
            continue
        results = explain_batch(explainer, header.get("ids", []), blobs, header.get("meta"))
        try:
            wire.write_message(proto_out, {"type": "results", "results": results})
        except (BrokenPipeError, OSError):
            return 0


def main(argv=None) -> int:
    cfg, heartbeat_fd, explaining = parse_args(argv)
    # The protocol owns the real stdout; anything else printing to fd 1 (Python or C code) goes to stderr.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    proto_in = sys.stdin.buffer
    # Ctrl-C in a terminal, or a SIGTERM to the server's process group, reaches us too: the web
    # process decides when we stop (it answers the frames we hold first, webapp/lifecycle.py).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if explaining and cfg.explain_nice:  # before any thread starts: TensorFlow's threads inherit it
        os.nice(cfg.explain_nice)
    if heartbeat_fd >= 0:  # first: loading TensorFlow takes a while, and we are alive meanwhile
        from webapp import heartbeat
        heartbeat.beat(heartbeat_fd)
    from fer_core import quiet
    quiet.load_backend()  # TensorFlow's start-up lines are noise in the server log (FER_VERBOSE=1 shows them)
    import warnings
    # Pillow warns about images over 89 M pixels; decode_image refuses anything over max_pixels anyway.
    warnings.filterwarnings("ignore", message=r"Image size .* could be decompression bomb")

    from webapp import wire

    if explaining:
        return serve_explanations(cfg, proto_in, proto_out)
    t0 = time.perf_counter()
    try:
        if cfg.tf_threads > 0:  # before TensorFlow's runtime starts, i.e. before any model is built
            import tensorflow as tf
            tf.config.threading.set_intra_op_parallelism_threads(cfg.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.tf_threads)
        from fer_core.predict import Predictor
        pred = Predictor(cfg.models_dir, tta=cfg.tta, runtime=cfg.runtime, precision=cfg.precision,
                         threads=cfg.tf_threads, detector=cfg.detector, detector_threads=cfg.detector_threads)
        pred.warm_up(cfg.warm_up_faces)
        from fer_core.runtime import Timed
        pred.runner = Timed(pred.runner)  # each batch reports its model time (webapp/metrics.py)
    except Exception as e:  # noqa: BLE001 - reported to the web process, which shows it on /healthz
        reason = f"{type(e).__name__}: {e}"
        log(f"cannot load the models: {reason}")
        wire.write_message(proto_out, {"type": "fatal", "reason": reason})
        return 1
    trackers = None
    if cfg.track_every > 0:  # fer_core/track.py: per-client face tracking (docs/benchmarks.md)
        from fer_core.track import FaceTracker, Trackers
        det = pred.detector
        # Faces, not boxes: each frame's crop is levelled on that frame's eyes (BlazeFace)
        trackers = Trackers(lambda: FaceTracker.for_detector(det, redetect_every=cfg.track_every,
                                                                  max_faces=cfg.max_faces, still=cfg.track_still))
    prep_pool = None
    if cfg.prep_chunks >= 2:  # one thread decodes and detects (the cascade, or BlazeFace's interpreter, stays in it)
        from concurrent.futures import ThreadPoolExecutor
        prep_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-prep")
    load_s = time.perf_counter() - t0
    log(f"ready: {len(pred.member_names)} members from {pred.models_dir} in {pred.runtime} {pred.precision} "
        f"in {load_s:.1f} s")
    if pred.choice is not None:  # the measured runtime, the timings that chose it, why the others do not serve
        log(pred.choice.describe())
    wire.write_message(proto_out, {"type": "ready", "labels": pred.labels, "members": pred.member_names,
                                   "models_dir": str(pred.models_dir), "load_s": round(load_s, 2),
                                   "rule": pred.spec.get("rule"), "tta": pred.tta, "pid": os.getpid(),
                                   "track_every": cfg.track_every, "detector": cfg.detector, "runtime": pred.runtime,
                                   "precision": pred.precision, "prep_chunks": cfg.prep_chunks,
                                   "spread_views": cfg.spread_views and trackers is not None,
                                   "track_still": cfg.track_still,
                                   "load_views_from": cfg.load_views_from,
                                   "runtime_choice": pred.choice.as_dict() if pred.choice is not None else None})
    while True:
        try:
            header, blobs = wire.read_message(proto_in)
        except wire.WireError:
            return 0  # the web process closed our stdin (or died): done
        if header.get("type") != "batch":
            log(f"unknown message type {header.get('type')!r}")
            continue
        ids = header.get("ids", [])
        t, busy = time.perf_counter(), pred.runner.busy_s
        results = handle_batch(pred, ids, blobs, cfg.max_faces, cfg.max_pixels, header.get("clients"), trackers,
                               prep_pool, cfg.prep_chunks, cfg.load_views_from, header.get("meta"), cfg.spread_views)
        try:
            wire.write_message(proto_out, {"type": "results", "results": results, "timing": {
                "worker": round((time.perf_counter() - t) * 1000, 3), "model": round((pred.runner.busy_s - busy) * 1000, 3)}})
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main())

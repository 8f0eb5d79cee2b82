"""The inference worker: the only process of the web app that imports TensorFlow.

    python -m webapp.worker --models DIR [--max-faces 8] [--max-pixels N] [--warm-up 32]
                            [--tta auto|none|flip|zoom-flip] [--tf-threads N] [--track-every 8]
                            [--runtime auto|tensorflow|litert|onnx] [--precision float32|float16|int8]

It loads the ensemble once, warms it up, reports ``ready`` on stdout, then answers batches of frames
read from stdin (see ``webapp.wire``): every frame is decoded, its faces found and cropped, and all
faces of the batch go through ONE ensemble call. A frame that cannot be used gets its own error; the
rest of its batch is answered as usual. Frames live in memory only: nothing is written to disk, and
log lines (stderr) never carry image data. End of stdin ends the worker.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from fer_core.tta import MODES as TTA_MODES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="models folder")
    p.add_argument("--max-faces", type=int, default=8)
    p.add_argument("--max-pixels", type=int, default=2_100_000)
    p.add_argument("--warm-up", type=int, default=32, help="compile predict buckets up to this many faces")
    p.add_argument("--tta", choices=("auto",) + TTA_MODES, default="auto",
                   help="test-time views (auto: the models folder's ensemble.json; fer_core/tta.py)")
    p.add_argument("--tf-threads", type=int, default=0, help="TensorFlow intra-op threads (0: its default)")
    p.add_argument("--runtime", choices=("auto", "tensorflow", "litert", "onnx"), default="auto",
                   help="what runs the members (auto: LiteRT where installed, else TensorFlow; fer_core/runtime.py)")
    p.add_argument("--precision", choices=("float32", "float16", "int8"), default="float32")
    p.add_argument("--prep-chunks", type=int, default=4,
                   help="cut a batch into N parts, decoding the next while the ensemble runs (<2: no overlap)")
    p.add_argument("--track-every", type=int, default=8,
                   help="follow each client's faces, searching its whole frame every N frames (0: every frame)")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[fer-worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def prepare(data: bytes, detector, max_faces: int, max_pixels: int, tracker=None):
    """(result without faces, boxes, crops) for one frame, or (error result, None, None). With a
    ``tracker`` (fer_core.track, the client's own), faces are followed from the client's last frame."""
    from fer_core.faces import ImageError, crop_faces, decode_image, find_faces
    try:
        img = decode_image(data, max_pixels=max_pixels, grey=True)  # detection and crops need grey only
        if tracker is None:
            boxes, crops = find_faces(img, detector, max_faces=max_faces)
        else:
            boxes = tracker.update(img)[:max_faces]
            crops = crop_faces(img, boxes)
    except ImageError as e:
        return {"error": str(e), "code": "bad_image"}, None, None
    except Exception as e:  # noqa: BLE001 - one odd frame must not end the batch
        log(f"frame failed: {type(e).__name__}")
        return {"error": "the frame could not be processed", "code": "internal"}, None, None
    return {"faces": [], "width": int(img.shape[1]), "height": int(img.shape[0])}, boxes, crops


def handle_batch(pred, ids, frames, max_faces: int, max_pixels: int, clients=None, trackers=None,
                 prep_pool=None, chunks: int = 4) -> list[dict]:
    """Per-frame results in ``ids`` order: {id, faces, width, height} or {id, error}.

    Every frame is decoded and searched for faces (one after the other: a CascadeClassifier must not
    be shared between threads), then the faces go through the ensemble. ``clients`` (one key per
    frame, or None) with ``trackers`` (fer_core.track.Trackers) follows each client's faces instead
    of searching anew.

    With ``prep_pool`` (a one-thread executor, the only thread that decodes and detects), the batch
    is cut into up to ``chunks`` parts: while the ensemble runs on one part's faces, the pool
    prepares the next part, so that both cores stay busy (docs/benchmarks.md). Without it, every
    frame is prepared first and all faces of the batch go through one ensemble call."""
    now = time.monotonic()
    n = len(frames)
    clients = clients if trackers is not None and clients and len(clients) == n else [None] * n

    def prep(lo, hi):
        return [prepare(frames[k], pred.detector, max_faces, max_pixels,
                        trackers.get(clients[k], now) if clients[k] is not None else None) for k in range(lo, hi)]

    if prep_pool is None or n < 2 or chunks < 2:
        return _classify(pred, ids, prep(0, n))
    size = -(-n // chunks)
    parts = [(lo, prep_pool.submit(prep, lo, min(n, lo + size))) for lo in range(0, n, size)]
    out = []
    for lo, fut in parts:
        prepared = fut.result()
        out += _classify(pred, ids[lo:lo + len(prepared)], prepared)
    return out


def _classify(pred, ids, prepared) -> list[dict]:
    """Results for prepared frames: all their faces through one ensemble call."""
    import numpy as np

    out, found = [], []  # found: (index in out, boxes, crops)
    for fid, (res, boxes, crops) in zip(ids, prepared):
        out.append(dict(res, id=fid))
        if boxes:
            found.append((len(out) - 1, boxes, crops))
    if found:
        crops = np.concatenate([c for _, _, c in found])
        try:
            probs, member_probs = pred.predict_faces(crops)  # one call for every face of these frames
        except Exception as e:  # noqa: BLE001
            log(f"inference failed: {type(e).__name__}: {e}")
            for i, _, _ in found:
                out[i] = {"id": out[i]["id"], "error": "inference failed", "code": "internal"}
            return out
        start = 0
        for i, boxes, c in found:
            end = start + len(c)
            out[i]["faces"] = pred.describe(probs[start:end], member_probs[start:end], boxes)
            start = end
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    # The protocol owns the real stdout; anything else printing to fd 1 (Python or C code) goes to stderr.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    proto_in = sys.stdin.buffer
    # Ctrl-C in a terminal reaches the whole process group: the web process decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings
    # Pillow warns about images over 89 M pixels; decode_image refuses anything over --max-pixels anyway.
    warnings.filterwarnings("ignore", message=r"Image size .* could be decompression bomb")

    from webapp import wire

    t0 = time.perf_counter()
    try:
        if args.tf_threads > 0:  # before TensorFlow's runtime starts, i.e. before any model is built
            import tensorflow as tf
            tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
        from fer_core.predict import Predictor
        pred = Predictor(args.models, tta=None if args.tta == "auto" else args.tta, runtime=args.runtime,
                         precision=args.precision, threads=args.tf_threads)
        pred.warm_up(args.warm_up)
    except Exception as e:  # noqa: BLE001 - reported to the web process, which shows it on /healthz
        reason = f"{type(e).__name__}: {e}"
        log(f"cannot load the models: {reason}")
        wire.write_message(proto_out, {"type": "fatal", "reason": reason})
        return 1
    trackers = None
    if args.track_every > 0:  # fer_core/track.py: per-client face tracking (docs/benchmarks.md)
        from fer_core.track import FaceTracker, Trackers
        det = pred.detector
        trackers = Trackers(lambda: FaceTracker(det.detect, det.detect_near, redetect_every=args.track_every))
    prep_pool = None
    if args.prep_chunks >= 2:  # decoding and detection overlap the ensemble; the cascade never runs in two threads at once
        from concurrent.futures import ThreadPoolExecutor
        prep_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-prep")
    load_s = time.perf_counter() - t0
    log(f"ready: {len(pred.member_names)} members from {pred.models_dir} in {pred.runtime} {pred.precision} "
        f"in {load_s:.1f} s")
    wire.write_message(proto_out, {"type": "ready", "labels": pred.labels, "members": pred.member_names,
                                   "models_dir": str(pred.models_dir), "load_s": round(load_s, 2),
                                   "rule": pred.spec.get("rule"), "tta": pred.tta, "pid": os.getpid(),
                                   "track_every": args.track_every, "runtime": pred.runtime,
                                   "precision": pred.precision, "prep_chunks": args.prep_chunks})
    while True:
        try:
            header, blobs = wire.read_message(proto_in)
        except wire.WireError:
            return 0  # the web process closed our stdin (or died): done
        if header.get("type") != "batch":
            log(f"unknown message type {header.get('type')!r}")
            continue
        ids = header.get("ids", [])
        results = handle_batch(pred, ids, blobs, args.max_faces, args.max_pixels, header.get("clients"), trackers,
                               prep_pool, args.prep_chunks)
        try:
            wire.write_message(proto_out, {"type": "results", "results": results})
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main())

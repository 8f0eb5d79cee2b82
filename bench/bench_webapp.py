"""The web app's speed: per-face inference of an ensemble, and a frame's round trip over Socket.IO.

    python bench/bench_webapp.py [--models DIR] [--frames 200] [--reps 50]

1. In this process, through ``fer_core.predict.Predictor`` (the worker's code path, compiled and
   bucketed): ms per face at batch 1, 8 and 16 with the folder's TTA setting (and at 16 with TTA the
   other way); plus decoding and face detection of one 320 px frame (what the worker does before the
   ensemble).
2. The server started the documented way
   (``gunicorn -k eventlet -w 1 --no-control-socket --bind 127.0.0.1:PORT 'webapp:create_app()'``,
   harness.server.gunicorn_cmd, on a free localhost port), then ONE python-socketio client sending the
   astronaut photo as a 320 px JPEG (what the page sends), one frame in flight: round trip p50/p95
   and the server's own ``ms``.

Prints a Markdown block. The models folder defaults to $FER_MODELS, else models/.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * len(v)) - 1))]


def frame_jpeg() -> bytes:
    import cv2
    from skimage import data
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", cv2.resize(bgr, (320, 320), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes()


def bench_predictor(models_dir: Path, reps: int, jpeg: bytes) -> dict:
    import numpy as np
    from fer_core.faces import decode_image, find_faces
    from fer_core.predict import Predictor

    t = time.perf_counter()
    pred = Predictor(models_dir)
    pred.warm_up(8)
    out = {"load_s": time.perf_counter() - t, "members": pred.member_names, "tta": pred.tta,
           "rule": pred.spec.get("rule")}
    rng = np.random.default_rng(0)

    def per_face(p, b):
        faces = rng.integers(0, 256, (b, 48, 48), dtype=np.uint8)
        p.predict_faces(faces)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            p.predict_faces(faces)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times), statistics.median(times) / b

    for b in (1, 8, 16):
        out[f"batch{b}"] = per_face(pred, b)
    other_mode = "none" if pred.tta != "none" else "flip"  # the same ensemble, one view instead of two
    other = Predictor(models_dir, tta=other_mode)
    other.warm_up(16)
    out["other_tta_batch16"] = per_face(other, 16)
    out["other_tta"] = other_mode
    out["params"] = int(pred.model.count_params())
    from fer_core import cost, tta as tta_views
    from harness import yardstick
    out["gflop"] = cost.model_gflop(pred.model) * tta_views.n_views(pred.tta)
    out["matmul_gflops"] = yardstick.matmul_gflops()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        find_faces(decode_image(jpeg), pred.detector)
        times.append((time.perf_counter() - t) * 1000)
    out["detect_ms"] = statistics.median(times)
    return out


def bench_server(models_dir: Path, frames: int, jpeg: bytes) -> dict:
    from harness.server import Client, free_port, gunicorn_cmd, server_env, start, stop, wait_healthy

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        t = time.perf_counter()
        proc = start(gunicorn_cmd(port), server_env(models_dir), log)
        try:
            wait_healthy(port, proc, log, timeout=600)
            ready_s = time.perf_counter() - t
            c = Client(port)
            try:
                for _ in range(10):  # warm-up, at the same pace
                    c.send(jpeg)
                    time.sleep(1 / 25)
                rtt, server = [], []
                for _ in range(frames):
                    t = time.perf_counter()
                    name, res = c.send(jpeg, timeout=60)
                    rtt.append((time.perf_counter() - t) * 1000)
                    if name != "result":
                        raise RuntimeError(f"frame failed: {res}")
                    server.append(res["ms"])
                    time.sleep(max(0.0, 1 / 25 - rtt[-1] / 1000))  # the page's pace: under the 30/s cap
            finally:
                c.close()
        finally:
            stop(proc)
    return {"ready_s": ready_s, "rtt50": pct(rtt, 50), "rtt95": pct(rtt, 95),
            "srv50": pct(server, 50), "srv95": pct(server, 95), "faces": len(res["faces"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    ap.add_argument("--frames", type=int, default=200, help="frames timed over Socket.IO")
    ap.add_argument("--reps", type=int, default=50, help="repetitions per Predictor timing")
    args = ap.parse_args(argv)
    from fer_core import store
    models_dir = store.resolve_models_dir(args.models).resolve()
    if not models_dir.is_dir():
        print(f"error: {models_dir}: models folder not found", file=sys.stderr)
        return 2
    jpeg = frame_jpeg()
    print(f"Predictor on {models_dir} ...", file=sys.stderr, flush=True)
    p = bench_predictor(models_dir, args.reps, jpeg)
    print("gunicorn -k eventlet ...", file=sys.stderr, flush=True)
    s = bench_server(models_dir, args.frames, jpeg)

    import keras
    print(f"\n**Web app speed** · models `{models_dir.name}/` ({len(p['members'])} members: "
          f"{', '.join(p['members'])}; rule {p['rule']}; test-time views {p['tta']}) · "
          f"Keras {keras.__version__} `{keras.backend.backend()}` · {platform.machine()}, {os.cpu_count()} cores · "
          f"`python bench/bench_webapp.py --models {args.models or models_dir.name} --frames {args.frames}`\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| ensemble, batch 1: ms per face (per call) | {p['batch1'][1]:.2f} ({p['batch1'][0]:.2f}) |")
    print(f"| ensemble, batch 8: ms per face (per call) | {p['batch8'][1]:.2f} ({p['batch8'][0]:.2f}) |")
    print(f"| ensemble, batch 16: ms per face (per call) | {p['batch16'][1]:.2f} ({p['batch16'][0]:.2f}) |")
    print(f"| the same, batch 16, test-time views {p['other_tta']}: ms per face (per call) | "
          f"{p['other_tta_batch16'][1]:.2f} ({p['other_tta_batch16'][0]:.2f}) |")
    print(f"| ensemble parameters | {p['params']:,} |")
    print(f"| ensemble GFLOP per face (conv + dense, x views) | {p['gflop']:.2f} |")
    print(f"| the same at batch 16, GFLOP/s (numpy float32 matmul, same run) | "
          f"{p['gflop'] / p['batch16'][1] * 1000:.0f} ({p['matmul_gflops']:.0f}) |")
    print(f"| decode + face detection, 320x320 JPEG, ms | {p['detect_ms']:.1f} |")
    print(f"| Predictor load + warm-up, s | {p['load_s']:.1f} |")
    print(f"| gunicorn start to /healthz 200, s | {s['ready_s']:.1f} |")
    print(f"| Socket.IO round trip, one client, p50 / p95 ms | {s['rtt50']:.1f} / {s['rtt95']:.1f} |")
    print(f"| of which server time (`ms` in the result), p50 / p95 | {s['srv50']:.1f} / {s['srv95']:.1f} |")
    print(f"\nMedians over {args.reps} calls; round trips over {args.frames} frames of the astronaut photo "
          f"({s['faces']} face) sent as a {len(jpeg) / 1000:.0f} kB 320x320 JPEG, one in flight, at most 25/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

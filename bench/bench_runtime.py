"""The ensemble in every runtime and precision, side by side in one run: speed and PrivateTest accuracy.

    python bench/bench_runtime.py [--models DIR] [--data fer2013.csv.gz] [--runtimes tensorflow/float32,litert/float32,...]
                                  [--reps 20] [--no-accuracy]

For each runtime/precision (fer_core/runtime.py; the exports are built first if not cached, and
their build time is reported): ms per face at batch 1 and batch 16 (medians; the runtimes take turns
within every repetition, so that all of them see the same machine load; wall and CPU time), then
PrivateTest accuracy (7 classes) of the ensemble with its own rule and test-time views, and how
often its label agrees with TensorFlow float32's. Prints Markdown.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALL = ("tensorflow/float32", "litert/float32", "litert/float16", "litert/int8",
       "onnx/float32", "onnx/float16", "onnx/int8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    ap.add_argument("--data", help="FER2013 (default: $FER2013_PATH or ../shared)")
    ap.add_argument("--runtimes", default=",".join(ALL), help="runtime/precision pairs, comma-separated")
    ap.add_argument("--reps", type=int, default=20, help="timed calls per batch size and runtime")
    ap.add_argument("--threads", type=int, default=0, help="threads for the exported runtimes (0: all cores)")
    ap.add_argument("--no-accuracy", action="store_true", help="speed only")
    args = ap.parse_args(argv)
    import numpy as np
    from fer_core import cost, runtime as runtimes
    from fer_core.ensemble import combine
    from fer_core.predict import Predictor
    from harness import yardstick

    pairs = [tuple(p.split("/")) for p in args.runtimes.split(",") if p.strip()]
    for r, pr in pairs:
        runtimes.check(r, pr)
    preds = {}
    # the table's last column, per (runtime, precision): its load time, or why it did not load
    load_column: dict[tuple[str, str], str] = {}
    for r, pr in pairs:
        if not runtimes.installed(r):
            load_column[(r, pr)] = "not installed"
            continue
        print(f"loading {r}/{pr} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            p = Predictor(args.models, runtime=r, precision=pr, threads=args.threads)
        except Exception as e:  # noqa: BLE001 - one runtime failing must not hide the others
            load_column[(r, pr)] = f"failed: {type(e).__name__}: {str(e)[:120]}"
            continue
        p.warm_up(16)
        preds[(r, pr)] = p
        load_column[(r, pr)] = f"{time.perf_counter() - t:.0f} s"
    any_p = next(iter(preds.values()))
    rng = np.random.default_rng(0)
    timing = {k: {1: [], 16: []} for k in preds}
    for b in (1, 16):
        faces = rng.integers(0, 256, (b, 48, 48), dtype=np.uint8)
        for p in preds.values():
            p.member_probs(faces)
        for _ in range(args.reps):
            for k, p in preds.items():  # take turns: the same load for every runtime
                t, c = time.perf_counter(), time.process_time()
                p.member_probs(faces)
                timing[k][b].append(((time.perf_counter() - t) * 1000 / b, (time.process_time() - c) * 1000 / b))
    gflops = yardstick.matmul_gflops()  # the yardstick, right after the timings (same load)
    acc, agree = {}, {}
    if not args.no_accuracy:
        from fer_core.data import load_fer2013
        data = load_fer2013(args.data)
        x, y = data["PrivateTest"].x, data["PrivateTest"].y
        labels = {}
        for k, p in preds.items():
            print(f"PrivateTest through {k[0]}/{k[1]} ...", file=sys.stderr, flush=True)
            mp = np.concatenate([p.member_probs(x[i:i + 512]) for i in range(0, len(x), 512)])
            labels[k] = combine(mp.transpose(1, 0, 2), p.weights).argmax(-1)
            acc[k] = float((labels[k] == y).mean() * 100)
        ref = labels.get(("tensorflow", "float32"))
        if ref is not None:
            agree = {k: float((v == ref).mean() * 100) for k, v in labels.items()}
    face_gflop = cost.model_gflop(any_p.model) * (1 if any_p.tta == "none" else 2)
    import keras
    print(f"\n**Runtimes** · models `{any_p.models_dir.name}/` ({', '.join(any_p.member_names)}; views {any_p.tta}; "
          f"{face_gflop:.2f} GFLOP per face) · {platform.machine()}, {os.cpu_count()} cores · numpy float32 matmul "
          f"{gflops:.0f} GFLOP/s (right after the timings) · Keras {keras.__version__} · "
          f"`python bench/bench_runtime.py {' '.join(sys.argv[1:])}`\n")
    print("| runtime / precision | ms per face, batch 1: wall / CPU | ms per face, batch 16: wall / CPU | GFLOP/s at "
          "batch 16 (wall) | PrivateTest, 7 classes, % | same label as TensorFlow, % | load (export if not cached) |")
    print("|---|---|---|---|---|---|---|")
    for r, pr in pairs:
        k = (r, pr)
        if k not in preds:
            print(f"| {r} / {pr} | – | – | – | – | – | {load_column[k]} |")
            continue
        m = {b: (statistics.median(w for w, _ in timing[k][b]), statistics.median(c for _, c in timing[k][b]))
             for b in (1, 16)}
        print(f"| {r} / {pr} | {m[1][0]:.2f} / {m[1][1]:.2f} | {m[16][0]:.2f} / {m[16][1]:.2f} | "
              f"{face_gflop / m[16][0] * 1000:.0f} | {acc[k]:.2f} | {agree.get(k, float('nan')):.2f} | {load_column[k]} |"
              if k in acc else
              f"| {r} / {pr} | {m[1][0]:.2f} / {m[1][1]:.2f} | {m[16][0]:.2f} / {m[16][1]:.2f} | "
              f"{face_gflop / m[16][0] * 1000:.0f} | – | – | {load_column[k]} |")
    print(f"\nMedians of {args.reps} calls (each runtime in turn); threads: TensorFlow's default, "
          f"{args.threads or os.cpu_count()} for the exported runtimes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

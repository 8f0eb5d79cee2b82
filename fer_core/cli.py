"""python -m fer_core {evaluate,predict,info}"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .tta import TTA  # noqa: E402 - numpy only; the parser lists its modes


class Progress:
    """A one-line progress counter on ``stream``, redrawn at most every ``interval`` seconds;
    silent unless the stream is a terminal, so logs and pipes get no carriage-return noise."""

    INTERVAL = 0.25

    def __init__(self, what: str, stream=None, interval: float | None = None, enabled: bool | None = None):
        self.what, self.stream = what, stream or sys.stderr
        self.interval = self.INTERVAL if interval is None else interval
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._start = None  # the first call (done 0) starts the clock for the time left
        self._last = -self.interval

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now
        if 0 < done < total and now - self._last < self.interval:
            return
        self._last = now
        pct = 100 * done // total if total else 100
        bar = "#" * (pct // 5) + "." * (20 - pct // 5)
        spent = now - self._start
        left = f", ~{spent / done * (total - done):.0f} s left" if 0 < done < total else ""
        self.stream.write(f"\r{self.what} [{bar}] {done:,}/{total:,} images {pct}% {spent:.0f} s{left}  ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _evaluate(args) -> int:
    from . import store
    from .data import load_fer2013, resolve_data_path
    from .evaluate import evaluate, write_metrics
    from .metrics import markdown_tables

    progress = Progress("scoring")
    progress.note(f"reading {resolve_data_path(args.data)} ...")
    data = load_fer2013(args.data)
    if args.split and args.split not in data.splits:
        raise ValueError(f"split {args.split} not in {data.source} (it has {', '.join(data.splits)})")
    models_dir = store.resolve_models_dir(args.models)
    progress.note("loading the models ...")
    metrics = evaluate(models_dir, data, progress=progress, runtime=args.runtime, precision=args.precision,
                       tta_mode=args.tta)
    if args.write:
        write_metrics(models_dir, metrics)
    if args.json:
        sel = metrics
        if args.split:
            sel = {k: ({n: {args.split: v[args.split]} for n, v in metrics[k].items()} if k in ("members", "rules")
                       else {args.split: metrics[k][args.split]} if k == "ensemble" else metrics[k])
                   for k in metrics}
        print(json.dumps(sel, indent=2))
    else:
        text = markdown_tables(metrics, args.split, str(args.classes) if args.classes else None)
        if not text:
            raise ValueError(f"no {args.classes}-class table: the models in this folder are scored on "
                             f"{', '.join(next(iter(metrics['ensemble'].values())))} classes")
        print(text)
    return 0


def _predict(args) -> int:
    from .predict import Predictor

    pred = Predictor(args.models, tta=TTA.NONE if args.no_tta else None, detector=args.detector)
    results, failed = [], 0
    for path in args.images:
        try:
            faces = pred.predict_file(path, whole=args.whole)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            # kept in the JSON array, in order, so a script can tell which file failed and why
            results.append({"path": path, "error": str(e)})
            continue
        results.append({"path": path, "faces": faces})
        if not args.json:
            if not faces:
                print(f"{path}: no face found")
            for i, f in enumerate(faces):
                top = sorted(f["probabilities"].items(), key=lambda kv: -kv[1])[:3]
                votes = ", ".join(f"{n}={v['label']}" for n, v in f["members"].items())
                print(f"{path} face {i} box {f['box']}: {f['label']} "
                      f"({', '.join(f'{k} {v:.2f}' for k, v in top)}) votes: {votes}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _pack(args) -> int:
    from .data import load_fer2013, pack

    data = load_fer2013(args.data)
    out = pack(data, args.out, splits=args.splits.split(","))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _info(args) -> int:
    from .predict import Predictor

    pred = Predictor(args.models)
    print(json.dumps({"models": str(pred.models_dir), "members": pred.member_names, "labels": pred.labels,
                      "rule": pred.spec.get("rule"), "tta": pred.tta,
                      "params": {s["name"]: s.get("params") for s in pred.sidecars}}, indent=2))
    return 0


def _data_option(p) -> None:
    p.add_argument("--data", help="fer2013.csv(.gz) or image folder (default: $FER2013_PATH or ../shared)")


def _models_option(p) -> None:
    p.add_argument("--models", help="models folder (default: $FER_MODELS or models/)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_core", description="FER2013 ensemble: evaluate and predict.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="recompute every table from the weights in a models folder",
                       description="Recompute every table from the weights in a models folder. On a terminal, "
                                   "a progress line goes to stderr (none when stderr is a pipe or a file).")
    _data_option(e)
    _models_option(e)
    e.add_argument("--split", choices=("PublicTest", "PrivateTest"), help="only this split")
    e.add_argument("--classes", type=int, choices=(6, 7), help="only this protocol")
    e.add_argument("--json", action="store_true", help="print the numbers as JSON")
    e.add_argument("--write", action="store_true", help="also rewrite metrics.json and report.md")
    e.add_argument("--runtime", default="tensorflow", choices=("auto", "tensorflow", "litert", "onnx"),
                   help="run the ensemble's members in this runtime (auto: what the server runs; fer_core/runtime.py)")
    e.add_argument("--precision", default="float32", choices=("float32", "float16", "int8"),
                   help="precision of an exported runtime")
    e.add_argument("--tta", choices=[str(m) for m in TTA],
                   help="test-time views (default: the ensemble's own, as the server uses them)")
    e.set_defaults(fn=_evaluate)
    r = sub.add_parser("predict", help="find faces in images and classify them")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    _models_option(r)
    r.add_argument("--json", action="store_true", help='print [{"path", "faces": [...]}, ...]; a file that could not be read '
                   'gets {"path", "error"} instead of "faces" (exit status 1)')
    r.add_argument("--whole", action="store_true", help="treat each image as one cropped face (no detection)")
    r.add_argument("--no-tta", action="store_true", help="one view per face instead of the ensemble's test-time views")
    r.add_argument("--detector", choices=("blazeface", "haar"),
                   help="face detector (default: blazeface, as the server; haar: OpenCV's cascade, upright faces only)")
    r.set_defaults(fn=_predict)
    k = sub.add_parser("pack", help="pack splits as uint8 .npz(.xz), e.g. to carry them to a GPU machine")
    _data_option(k)
    k.add_argument("--out", required=True, help="output .npz or .npz.xz")
    k.add_argument("--splits", default="Training,PublicTest,PrivateTest")
    k.set_defaults(fn=_pack)
    i = sub.add_parser("info", help="describe the ensemble in a models folder")
    _models_option(i)
    i.set_defaults(fn=_info)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as ex:  # DataError, ModelsError, ImageError included
        print(f"error: {ex}", file=sys.stderr)
        return 2

"""python -m fer_core {evaluate,admit,predict,pack,info}"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import quiet  # noqa: E402 - stdlib only
from .config import DETECTORS  # noqa: E402 - numpy only
from .runtime import (AUTO, DEFAULT_PRECISION, DEFAULT_RUNTIME, PRECISION_ENV, PRECISIONS,  # noqa: E402 - numpy only
                      REFERENCE, RUNTIME_ENV, RUNTIMES, TOLERANCE_PP)
from .tta import TTA  # noqa: E402 - numpy only; the parser lists its modes
from .track import REDETECT_EVERY  # noqa: E402 - numpy only; after the TensorFlow log level is set


class Progress:
    """A one-line progress counter on ``stream``, redrawn at most every ``interval`` seconds;
    silent unless the stream is a terminal, so logs and pipes get no carriage-return noise."""

    INTERVAL = 0.25

    def __init__(self, what: str, stream=None, interval: float | None = None, enabled: bool | None = None,
                 unit: str = "images"):
        self.what, self.stream, self.unit = what, stream or sys.stderr, unit
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
        self.stream.write(f"\r{self.what} [{bar}] {done:,}/{total:,} {self.unit} {pct}% {spent:.0f} s{left}  ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def one_line(text: str) -> str:
    """``text`` for a plain-text line: control characters (a newline in a file name would start a
    line of its own, forging output) written as escapes."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _evaluate(args) -> int:
    from . import store
    from .data import load_fer2013, resolve_data_path
    from .evaluate import evaluate, write_metrics
    from .metrics import SCORED_SPLITS
    from .metrics import markdown_tables

    progress = Progress("scoring", unit="faces")
    progress.note(f"reading {resolve_data_path(args.data)} ...")
    data = load_fer2013(args.data)
    if args.split and args.split not in data.splits:
        raise ValueError(f"split {args.split} not in {data.source} (it has {', '.join(data.splits)})")
    # both splits are scored whatever --split shows: the rules' weights come from PublicTest
    scored = [s for s in SCORED_SPLITS if s in data.splits]
    faces = sum(len(data[s]) for s in scored)
    progress.what = f"scoring {' and '.join(f'{s} ({len(data[s]):,})' for s in scored)}"

    def tick(done, total):
        # a face counts once per model that scores it: the ensemble, then each member left out of it
        models = max(1, round(total / faces)) if faces else 1
        progress.unit = "faces" if models == 1 else f"faces ({faces:,} faces x {models} models)"
        progress(done, total)

    models_dir = store.resolve_models_dir(args.models)
    progress.note("loading the models ...")
    # a named runtime is scored at float32 unless a precision is named; auto alone is the server's
    # choice, runtime and precision measured among the admitted
    precision = args.precision or (AUTO if args.runtime == AUTO else REFERENCE[1])
    metrics = evaluate(models_dir, data, progress=tick if progress.enabled else None, runtime=args.runtime,
                       precision=precision, tta_mode=args.tta)
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
    from pathlib import Path

    from .video import VIDEO_EXTENSIONS

    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if args.track_every < 0:
        raise ValueError(f"--track-every must be >= 0, got {args.track_every}")
    videos_or_folders = [p for p in args.images if Path(p).is_dir() or Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    if args.json and args.format == "csv":
        raise ValueError("--json and --format csv ask for two formats: give one (got both)")
    if args.json and videos_or_folders:
        args.format = "jsonl"  # rows are written as they come: one JSON object a line, not one array at the end
    if args.whole and videos_or_folders:
        raise ValueError(f"--whole is for images that are one face each, not videos or folders "
                         f"(got {videos_or_folders[0]})")
    pred = _predictor(args)  # before --out is opened: a models folder that fails truncates no file
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        if args.format or videos_or_folders:
            return _predict_rows(args, pred, out)
        return _predict_images(args, pred, out)
    finally:
        if args.out:
            out.close()


def _predictor(args):
    from .predict import Predictor

    pred = Predictor(args.models, tta=TTA.NONE if args.no_tta else None, detector=args.detector,
                     runtime=args.runtime, precision=args.precision)
    if pred.choice is not None and sys.stderr.isatty():
        print(one_line(pred.choice.describe()), file=sys.stderr)
    return pred


def _admit(args) -> int:
    from . import runtime

    pairs = [tuple(p.strip().split("/", 1)) for p in args.runtimes.split(",") if p.strip()]
    bad = [p for p in pairs if len(p) != 2]
    if bad or not pairs:
        raise ValueError(f"--runtimes takes runtime/precision pairs like litert/int8, got {args.runtimes!r}")
    rec = runtime.admit(args.models, args.data, pairs=pairs, limit=args.limit, threads=args.threads,
                        log=lambda line: print(one_line(line), flush=True))
    from . import store
    print(f"wrote {store.resolve_models_dir(args.models) / runtime.ADMISSIONS}"
          + ("" if rec["complete"] else f" (scored on {rec['images']} of {rec['of']} faces: the server admits "
                                        f"nothing from it)"))
    return 0


def _predict_images(args, pred, out) -> int:
    from .video import kind_of

    results, failed = [], 0
    for path in args.images:
        try:
            kind_of(path)
            faces = pred.predict_file(path, whole=args.whole)
        except (ValueError, FileNotFoundError) as e:
            print(one_line(f"error: {e}"), file=sys.stderr)
            failed += 1
            # kept in the JSON array, in order, so a script can tell which file failed and why
            results.append({"path": path, "error": str(e)})
            continue
        results.append({"path": path, "faces": faces})
        if not args.json:
            if not faces:
                print(one_line(f"{path}: no face found"), file=out)
            for i, f in enumerate(faces):
                top = sorted(f["probabilities"].items(), key=lambda kv: -kv[1])[:3]
                votes = ", ".join(f"{n}={v['label']}" for n, v in f["members"].items())
                print(one_line(f"{path} face {i} box {f['box']}: {f['label']} "
                               f"({', '.join(f'{k} {v:.2f}' for k, v in top)}) votes: {votes}"), file=out)
    if args.json:
        print(json.dumps(results, indent=2), file=out)
    return 1 if failed else 0


def _predict_rows(args, pred, out) -> int:
    """Videos, folders and images as rows (fer_core/video.py), CSV or JSON lines, written as they come."""
    import csv
    from pathlib import Path

    from .video import VideoError, columns, folder_files, kind_of, rows, video_frames

    cols = columns(pred.labels, pred.member_names)
    fmt = args.format or "csv"
    writer = csv.DictWriter(out, cols, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    # a progress line only where it cannot land among the rows: stderr a terminal, the rows elsewhere
    show = sys.stderr.isatty() and not out.isatty()
    failed = 0

    def write(batch):
        for r in batch:
            if writer:
                writer.writerow(r)
            else:
                out.write(json.dumps(r) + "\n")
        out.flush()

    def fail(path, e):
        nonlocal failed
        failed += 1
        print(one_line(f"error: {e}"), file=sys.stderr)
        write(rows(path, error=str(e), labels=pred.labels, members=pred.member_names))

    files = []
    for p in args.images:
        if Path(p).is_dir():
            inside = folder_files(p)
            if not inside:
                fail(p, ValueError(f"{p}: no files in this folder"))
            files += inside
        else:
            files.append(Path(p))
    for path in files:
        try:
            kind = kind_of(path)
            if kind == "video":
                progress = Progress(one_line(path.name), enabled=show, unit="frames")
                for frame in video_frames(pred, path, every=args.every, track_every=args.track_every,
                                          progress=progress):
                    write(rows(path, frame=frame, labels=pred.labels, members=pred.member_names))
            else:
                write(rows(path, pred.predict_file(path, whole=args.whole), labels=pred.labels,
                           members=pred.member_names))
        except (VideoError, ValueError, FileNotFoundError) as e:
            fail(path, e)
    return 1 if failed else 0


def _pack(args) -> int:
    from .data import load_fer2013, pack

    data = load_fer2013(args.data)
    out = pack(data, args.out, splits=args.splits.split(","))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _info(args) -> int:
    from .predict import Predictor

    pred = Predictor(args.models, runtime=REFERENCE[0], precision=REFERENCE[1])  # describes it: nothing to time
    print(json.dumps({"models": str(pred.models_dir), "members": pred.member_names, "labels": pred.labels,
                      "rule": pred.spec.get("rule"), "tta": pred.tta,
                      "params": {s["name"]: s.get("params") for s in pred.sidecars}}, indent=2))
    return 0


def _data_option(p) -> None:
    p.add_argument("--data", help="fer2013.csv(.gz) or image folder (default: $FER2013_PATH or ../shared)")


def _models_option(p) -> None:
    p.add_argument("--models", help="models folder (default: $FER_MODELS or models/)")
    p.add_argument("--verbose", action="store_true",
                   help="also show TensorFlow's and LiteRT's start-up log lines (or set FER_VERBOSE=1)")


def fer() -> int:
    """The `fer` command that `pip install .` makes (pyproject.toml)."""
    return main(prog="fer")


def main(argv=None, prog: str = "python -m fer_core") -> int:
    p = argparse.ArgumentParser(prog=prog, description="FER2013 ensemble: evaluate, predict, pack, info.")
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
    e.add_argument("--runtime", default=REFERENCE[0], choices=(AUTO, *RUNTIMES),
                   help=f"run the ensemble's members in this runtime (default {REFERENCE[0]} {REFERENCE[1]}, the "
                        f"reference that admit scores exports against; auto: what the server runs; fer_core/runtime.py)")
    e.add_argument("--precision", choices=(AUTO, *PRECISIONS),
                   help=f"precision of an exported runtime (default {REFERENCE[1]}; with --runtime auto: auto, the "
                        "server's measured choice among the admitted)")
    e.add_argument("--tta", choices=[str(m) for m in TTA],
                   help="test-time views (default: the ensemble's own, as the server uses them)")
    e.set_defaults(fn=_evaluate)
    r = sub.add_parser(
        "predict", help="find faces in images, videos and folders and classify them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find faces and classify them.\n\n"
                    "A file is a video when its extension is one of .mp4 .avi .mov .mkv .webm: it is opened with "
                    "OpenCV's VideoCapture\n(a file it cannot open, or whose frames are over 16.7 Mpx, is an error naming it). Images are .jpg "
                    ".jpeg .png .bmp .webp .tif .tiff .pgm .ppm .pnm;\nany other extension is an error, and so is "
                    "anything but a regular file (a FIFO, a device, a symbolic link loop). A folder\nstands for its "
                    "entries but its sub-folders (sorted, not recursive, hidden ones left out).\n\n"
                    "Images alone print one line per face (or, with --json, one JSON array). Videos and folders, or --format, write rows: "
                    "one per face\nper frame (per file for an image), columns path, frame, time (s), face (index, "
                    "largest first), track\n(the face's id while it is followed), x, y, w, h, label, one probability "
                    "per class, vote_<member> (each\nmember's top label), error. A frame or image without a face gets "
                    "one row with the face columns empty;\na file that fails gets one row with its error (exit "
                    "status 1). Faces in a video are found as the server\nfinds them: a whole-frame search every "
                    "--track-every frames read, followed near their boxes in between.\nOn a terminal, a progress "
                    "line goes to stderr while the rows go to a file or a pipe.")
    r.add_argument("images", nargs="+", metavar="FILE", help="images, videos or folders")
    _models_option(r)
    r.add_argument("--json", action="store_true", help='JSON: for images alone, one array [{"path", "faces": [...]}, '
                   '...], where a file that could not be read gets {"path", "error"} instead of "faces" (exit '
                   'status 1); with a video or a folder, the rows as JSON lines (--format jsonl)')
    r.add_argument("--format", choices=("csv", "jsonl"), help="write rows, as CSV (with a header) or one JSON "
                   "object per line with the same keys (default for videos and folders: csv; jsonl with --json)")
    r.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    r.add_argument("--every", type=int, default=1, metavar="K", help="videos: read every K-th frame (0, K, 2K, ...)")
    r.add_argument("--track-every", type=int, default=REDETECT_EVERY, metavar="N",
                   help=f"videos: search the whole frame every N frames read, else follow the faces (default "
                        f"{REDETECT_EVERY}, as the server; 0: search every frame)")
    r.add_argument("--whole", action="store_true", help="treat each image as one cropped face (no detection)")
    r.add_argument("--no-tta", action="store_true", help="one view per face instead of the ensemble's test-time views")
    r.add_argument("--runtime", default=os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME, choices=(AUTO, *RUNTIMES),
                   help=f"what runs the members (default: ${RUNTIME_ENV}, else {DEFAULT_RUNTIME}: the fastest admitted "
                        "here, measured as the server measures it; fer_core/runtime.py)")
    r.add_argument("--precision", default=os.environ.get(PRECISION_ENV) or DEFAULT_PRECISION,
                   choices=(AUTO, *PRECISIONS),
                   help=f"precision of an exported runtime (default: ${PRECISION_ENV}, else {DEFAULT_PRECISION})")
    r.add_argument("--detector", choices=DETECTORS,
                   help="face detector (default: blazeface, as the server; blazeface-full: its full-range model for "
                        "followed faces too; haar: OpenCV's cascade, upright faces only)")
    r.set_defaults(fn=_predict)
    a = sub.add_parser("admit", help="score the exported runtimes on PublicTest and record which may serve",
                       description="Score each exported runtime/precision of the ensemble on the whole of "
                                   "PublicTest against TensorFlow float32 and write runtimes.json beside the "
                                   "weights: the server (and predict with --runtime auto) serves an export only "
                                   f"when that record matches the current weights and export and its accuracy is "
                                   f"within {TOLERANCE_PP} pp of float32's. Rerun it after the ensemble changes.")
    _data_option(a)
    _models_option(a)
    a.add_argument("--runtimes", default="litert/float32,litert/int8,onnx/float32,onnx/int8",
                   help="exported runtime/precision pairs to score, comma-separated (also: litert/float16, "
                        "onnx/float16)")
    a.add_argument("--limit", type=int, metavar="N", help="only the first N PublicTest faces: a quick check, "
                   "recorded as partial (the server admits nothing from it)")
    a.add_argument("--threads", type=int, default=0, help="threads of the exported runtimes (0: all cores)")
    a.set_defaults(fn=_admit)
    k = sub.add_parser("pack", help="pack splits as uint8 .npz(.xz), e.g. to carry them to a GPU machine")
    _data_option(k)
    k.add_argument("--out", required=True, help="output .npz or .npz.xz")
    k.add_argument("--splits", default="Training,PublicTest,PrivateTest")
    k.set_defaults(fn=_pack)
    i = sub.add_parser("info", help="describe the ensemble in a models folder")
    _models_option(i)
    i.set_defaults(fn=_info)
    args = p.parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[quiet.VERBOSE_ENV] = "1"
    if args.cmd != "pack":  # every other command runs the models: load TensorFlow once, quietly
        quiet.load_backend()
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as ex:  # DataError, ModelsError, ImageError included
        print(one_line(f"error: {ex}"), file=sys.stderr)
        return 2

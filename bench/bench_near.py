"""The tracker's near search with BlazeFace's full-range model against its short-range model.

    python bench/bench_near.py [--reps 3]

A followed face is looked for once per frame between whole-frame searches (fer_core/track.py), in a
patch about it turned by its last roll (``BlazeFaceDetector.detect_near_faces``): 4x its side for the
full-range model (192 px, as its levelled look in the whole-frame search), ``near_context`` (2.5) x
for the short-range model (128 px, the one served for the near search), which costs a third as much. This compares the two on bench_detector.py's
90 frames (the two shipped faces, rolled -30..30 degrees, 20-45 % of a 320 px frame, three
lights), each followed from the face the served whole-frame search finds there, on the same frame
and on the frame shifted by 8 % of the face's side (a head moving between two frames):

* found: a face within half a side of the truth;
* the short-range box against the full-range box on the same face, uncalibrated
  (no ``NEAR_BOX`` correction): side ratio, and the centre's offset along the face's up, in
  sides; their means are what fer_core/faces.py's ``NEAR_BOX[128]`` (scale, raise) was set from
  (printed at the end);
* with the served calibration: the pixel correlation of the levelled 48x48 crop from the
  short-range look with the crop from the full-range look (what the ensemble sees);
* the roll of the eye line found, against the truth (the upright photo's roll less the turn);
* ms per near search (CPU), median over ``--reps`` passes.
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
sys.path.insert(0, str(ROOT / "bench"))


def _geometry(a, b):
    """(b's side / a's, b's centre offset along a's up in a's sides)."""
    import numpy as np
    (ax, ay, aw, ah), (bx, by, bw, bh) = a.box, b.box
    r = np.radians(a.roll)
    up = np.array([np.sin(r), -np.cos(r)])  # image y down: the face's up, perpendicular to its eye line
    d = np.array([bx + bw / 2 - ax - aw / 2, by + bh / 2 - ay - ah / 2])
    return max(bw, bh) / max(aw, ah), float(d @ up) / max(aw, ah)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--near-context", type=float, default=None,
                    help="the short-range look's patch, x the face's side (default: the served one)")
    args = ap.parse_args(argv)
    import cv2
    import numpy as np
    from bench_detector import test_set
    from fer_core import faces as F

    full = F.BlazeFaceDetector(near_path=None)
    kw = {} if args.near_context is None else {"near_context": args.near_context}
    short = F.BlazeFaceDetector(**kw)          # served: short-range near search, calibrated
    raw = F.BlazeFaceDetector(**kw)            # the same, uncalibrated
    raw._near.box_scale, raw._near.box_raise = raw._net.box_scale, raw._net.box_raise
    cases = []
    frames = test_set()
    # each photo's own roll, upright (the full-range whole-frame find, as shot, largest size): a frame
    # turned by ``roll`` degrees (counter-clockwise) shows it at upright - roll (Face.roll's sense)
    upright = {}
    for name, roll, size, light, jpeg, _ in frames:
        if roll == 0 and light == "as shot" and size == max(f[2] for f in frames):
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
            upright[name] = full.detect_faces(img)[0].roll
    for name, roll, size, light, jpeg, (tx, ty, tside) in frames:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        first = [f for f in full.detect_faces(img)
                 if np.hypot(f.box[0] + f.box[2] / 2 - tx, f.box[1] + f.box[3] / 2 - ty) < tside / 2]
        if not first:
            continue  # the whole-frame search misses it: nothing to follow
        dx = round(0.08 * first[0].box[2])
        moved = np.roll(img, dx, axis=1)
        for frame, truth_x, label in ((img, tx, "same frame"), (moved, tx + dx, "moved 8 %")):
            cases.append((label, frame, first[0], (truth_x, ty, tside), upright[name] - roll))

    def hit(found, truth):
        tx, ty, side = truth
        near = [f for f in found if np.hypot(f.box[0] + f.box[2] / 2 - tx, f.box[1] + f.box[3] / 2 - ty) < side / 2]
        return near[0] if near else None

    rows = {}
    for label, frame, last, truth, true_roll in cases:
        a, b, c = (hit(d.detect_near_faces(frame, last), truth) for d in (full, raw, short))
        r = rows.setdefault(label, {"n": 0, "full": 0, "short": 0, "ratio": [], "raise": [], "corr": [],
                                    "roll_full": [], "roll_short": []})
        for key, f in (("roll_full", a), ("roll_short", c)):
            if f is not None:
                r[key].append(abs(f.roll - true_roll))
        r["n"] += 1
        r["full"] += a is not None
        r["short"] += c is not None
        if a is not None and b is not None:
            k, off = _geometry(a, b)
            r["ratio"].append(k)
            r["raise"].append(off)
        if a is not None and c is not None:
            ca = F.align_crop(frame, a.box, a.left_eye, a.right_eye).astype(np.float32).ravel()
            cc = F.align_crop(frame, c.box, c.left_eye, c.right_eye).astype(np.float32).ravel()
            r["corr"].append(float(np.corrcoef(ca, cc)[0, 1]))
    ms = {}
    for key, d in (("full", full), ("short", short)):
        times = []
        for _ in range(args.reps):
            for _, frame, last, _, _ in cases:
                c0 = time.process_time()
                d.detect_near_faces(frame, last)
                times.append((time.process_time() - c0) * 1000)
        ms[key] = statistics.median(times)
    print(f"\n**Near search: full-range against short-range BlazeFace** · {platform.machine()}, {os.cpu_count()} cores · "
          f"`python bench/bench_near.py {' '.join(sys.argv[1:])}`\n")
    print("| frames | followed | found, full range | found, short range | short / full side, mean (min-max) "
          "| short - full centre along up, sides, mean (min-max) | crop correlation, served short vs full, median (min) "
          "| roll error, full range, median / p95 / max, ° | roll error, short range, median / p95 / max, ° |")
    print("|---|---|---|---|---|---|---|---|---|")
    pcts = lambda v: f"{np.median(v):.1f} / {np.percentile(v, 95):.1f} / {max(v):.1f}"  # noqa: E731
    for label, r in rows.items():
        print(f"| {label} | {r['n']} | {100 * r['full'] / r['n']:.0f} % | {100 * r['short'] / r['n']:.0f} % | "
              f"{np.mean(r['ratio']):.3f} ({min(r['ratio']):.3f}-{max(r['ratio']):.3f}) | "
              f"{np.mean(r['raise']):+.3f} ({min(r['raise']):+.3f}-{max(r['raise']):+.3f}) | "
              f"{np.median(r['corr']):.3f} ({min(r['corr']):.3f}) | {pcts(r['roll_full'])} | {pcts(r['roll_short'])} |")
    print(f"\nms per near search, CPU (median of {args.reps} passes over {len(cases)} searches): "
          f"full range {ms['full']:.2f}, short range {ms['short']:.2f}")
    ratio = np.mean([k for r in rows.values() for k in r["ratio"]])
    off = np.mean([o for r in rows.values() for o in r["raise"]])
    # the short box's side is divided by ratio; its centre must move by -off full sides along the up,
    # and the raise is counted in the model's own side (before BOX_SCALE): short side / BOX_SCALE
    print(f"\nCalibration from the uncalibrated boxes (all frames): NEAR_BOX[128] = ({1 / ratio:.3f}, "
          f"{-off * F.BOX_SCALE / ratio:+.4f}) (served: {F.NEAR_BOX[128]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

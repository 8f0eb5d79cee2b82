"""Accuracy of test-time views spread over frames (fer_core/spread.py), as the server computes them.

    python bench/bench_spread.py [--data ../shared/datasets/fer2013/fer2013.csv.gz] [--models models]
                                 [--split PrivateTest] [--runtime auto]

The server gives a followed face one view a frame and averages it with the other view from the
stream's last frame. On a still face that is exactly the mode's answer; this measures how much it
costs when the last frame was not the same picture. Each test face x is the current frame; its last
frame is x moved (shifted and turned a little, with webcam-like noise), or another test face (an
expression that changed between the two frames: the frame after it is whole again). Both orders of
the views are scored (the last frame gave view 0 and this one view 1, and the other way round), and
the answers go through ``FaceViews`` exactly as in the worker. The members run in the served runtime.
Accuracy over the split, 7 classes; nothing here is chosen from it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def moved(x: np.ndarray, shift: float, turn: float, noise: float, seed: int) -> np.ndarray:
    """Faces (N, 48, 48) each shifted by up to ``shift`` px, turned by up to ``turn`` degrees about
    its centre (uniform, random signs) and given Gaussian noise of ``noise`` grey levels."""
    import cv2
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i, f in enumerate(x):
        m = cv2.getRotationMatrix2D((23.5, 23.5), rng.uniform(-turn, turn), 1.0)
        m[:, 2] += rng.uniform(-shift, shift, 2)
        g = cv2.warpAffine(f, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i] = np.clip(g + rng.normal(0, noise, g.shape), 0, 255) if noise else g
    return out


def spread_answers(pred, last: np.ndarray, now: np.ndarray, first: int) -> np.ndarray:
    """Ensemble probabilities (N, C) at the frame ``now`` of streams whose last frame was ``last``:
    that frame computed view ``first``, this one the other, combined by ``FaceViews`` as served."""
    from fer_core.spread import FaceViews
    n = len(now)
    a = pred.view_probs(last, [(i, first) for i in range(n)])
    b = pred.view_probs(now, [(i, 1 - first) for i in range(n)])
    out = []
    for i in range(n):
        fv = FaceViews(2)
        fv.record(1, 0.0, {first: a[i]})
        assert fv.plan(2, 0.2) == [1 - first]
        mp, _, _ = fv.record(2, 0.2, {1 - first: b[i]})
        out.append(mp)
    return pred.combine(np.stack(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="FER2013 (default: $FER2013_PATH or ../shared)")
    ap.add_argument("--models", default="models")
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--limit", type=int, help="the first N faces of the split only (a quick look)")
    args = ap.parse_args(argv)

    from fer_core import tta
    from fer_core.data import load_fer2013
    from fer_core.predict import Predictor

    data = load_fer2013(args.data)[args.split]
    x, y = data.x[:args.limit], data.y[:args.limit]
    pred = Predictor(args.models, runtime=args.runtime)
    if tta.n_views(pred.tta) != 2:
        raise SystemExit(f"the ensemble's views {pred.tta} are one view: nothing to spread")

    def acc(p):
        return 100 * float((p.argmax(1) == y).mean())

    rows = [(f"{pred.tta}, all views of this frame (a still face spread over frames gives exactly this)",
             acc(pred.predict_faces(x)[0]))]
    rows.append((f"{tta.first_view(pred.tta)}, this frame's first view only (a new face under load)",
                 acc(pred.predict_faces(x, tta.first_view(pred.tta))[0])))
    lasts = [("still (the same picture)", x)]
    for shift, turn, noise in ((1, 2, 2), (2, 5, 4), (4, 10, 6)):
        lasts.append((f"moved up to {shift} px and {turn} deg, noise {noise} grey levels",
                      moved(x, shift, turn, noise, seed=shift)))
    other = x[np.random.default_rng(0).permutation(len(x))]
    lasts.append(("another face (the expression changed between the two frames)", other))
    for name, last in lasts:
        a = [acc(spread_answers(pred, last, x, first)) for first in (0, 1)]
        rows.append((f"spread, last frame {name}", *a))

    print(f"{args.split}, {len(x)} faces, 7 classes, members {', '.join(pred.member_names)} in {pred.runtime} "
          f"{pred.precision}, views {pred.tta}\n")
    print("| answer | accuracy, % (last frame view 0 / view 1) |")
    print("|---|---|")
    for name, *a in rows:
        print(f"| {name} | {' / '.join(f'{v:.2f}' for v in a)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

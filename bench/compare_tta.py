"""Accuracy of each member under different test-time views, on one split (PublicTest by default).

    python bench/compare_tta.py --data ../shared/datasets/fer2013/fer2013.csv.gz [--models models]
                                [--split PublicTest] [--members vgg_s,resnet_s]

The modes of fer_core/tta.py (none, flip, zoom-flip) and, to show why zoom-flip is the one offered,
a few neighbours: stronger zooms (crop c px a side, resize back, + mirror), a half-pixel bilinear
shift (resampling without zoom, + mirror), and ten crops (four 46 px corners and the centre, + mirrors).
Choices are made on PublicTest only: run it on PrivateTest just to see, never to choose.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _resize_crop(x, top, left, size):
    import cv2
    return np.stack([cv2.resize(f[top:top + size, left:left + size], (48, 48), interpolation=cv2.INTER_LINEAR)
                     for f in x])


def _half_pixel(x):
    import cv2
    m = np.float32([[1, 0, 0.5], [0, 1, 0.5]])
    return np.stack([cv2.warpAffine(f, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for f in x])


def view_sets(x: np.ndarray) -> dict[str, list[np.ndarray]]:
    from fer_core import tta
    x = x.astype(np.float32)
    mirror = x[:, :, ::-1]
    sets = {m: tta.views(x, m) for m in tta.MODES}
    for c in (2, 3, 4):
        z = _resize_crop(x, c, c, 48 - 2 * c)
        sets[f"zoom {c} px a side + mirror"] = [z, z[:, :, ::-1]]
    h = _half_pixel(x)
    sets["half-pixel shift + mirror"] = [h, _half_pixel(mirror)]
    sets["ten 46 px crops"] = [_resize_crop(v, t, l, 46) for v in (x, mirror)
                               for t, l in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))]
    return sets


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="FER2013 (default: $FER2013_PATH or ../shared)")
    p.add_argument("--models", default="models")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--members", help="comma-separated (default: every member in --models)")
    args = p.parse_args(argv)

    from fer_core import store
    from fer_core.data import load_fer2013
    data = load_fer2013(args.data)
    split = data[args.split]
    models = Path(args.models)
    names = args.members.split(",") if args.members else store.list_members(models)
    sets = view_sets(split.x)
    acc: dict[str, dict[str, float]] = {}
    for n in names:
        m, _ = store.load_member(models / n)
        cache: dict[int, np.ndarray] = {}

        def probs(v):  # views shared between sets are predicted once
            if id(v) not in cache:
                cache[id(v)] = m.predict(v[..., None], batch_size=512, verbose=0)
            return cache[id(v)]
        for s, views in sets.items():
            p_ = np.mean([probs(v) for v in views], axis=0)
            acc.setdefault(s, {})[n] = float((p_.argmax(1) == split.y).mean())
    print(f"{args.split}, 7 classes, accuracy % (`python bench/compare_tta.py --split {args.split}`)\n")
    print("| test-time views | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for s, row in acc.items():
        print(f"| {s} | " + " | ".join(f"{100 * row[n]:.2f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Face detection cost, old settings against new: what the inference worker does for every frame.

    python bench/bench_detect.py [--reps 200]

For the astronaut photo (``skimage.data.astronaut()``) as a JPEG at 320, 640 and 1280 px: decode plus
Haar face detection, median ms per frame, with OpenCV's default threads and with one thread; and how
many faces each setting finds there, in a two-face frame (the astronaut beside a smaller copy of
herself) and in scikit-image's other sample pictures (which show no human face). Prints Markdown.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLD = dict(scale_factor=1.1, min_neighbors=6, min_size=0.1, detect_side=0)  # before docs/benchmarks.md
SAMPLES = ("camera", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat",
           "page", "text", "coins", "brick", "grass", "gravel", "motorcycle_left", "horse", "moon", "eagle")


def bgr(a):
    import cv2
    import numpy as np
    a = np.asarray(a)
    if a.ndim == 2:
        return cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGBA2BGR if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)
    import cv2
    import numpy as np
    from skimage import data
    from fer_core.faces import FaceDetector, decode_image, find_faces

    ast = bgr(data.astronaut())
    jpegs = {w: cv2.imencode(".jpg", cv2.resize(ast, (w, w), interpolation=cv2.INTER_AREA),
                             [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for w in (320, 640, 1280)}
    a = cv2.resize(ast, (320, 320))
    b = np.full_like(a, 120)
    b[40:280, 40:280] = cv2.resize(ast, (240, 240))
    two = np.hstack([a, b])
    others = {}
    for n in SAMPLES:
        try:
            im = bgr(getattr(data, n)())
        except Exception:  # noqa: BLE001 - a sample that needs a download
            continue
        others[n] = cv2.resize(im, (320, round(im.shape[0] * 320 / im.shape[1])), interpolation=cv2.INTER_AREA)
    dets = {"old (1.1, 6, 10 %, full size)": (FaceDetector(**OLD), False),
            "new (1.3, 5, 14 %, <= 320 px; grey decode)": (FaceDetector(), True)}
    default_threads = cv2.getNumThreads()
    rows = []
    for name, (d, grey) in dets.items():
        row = {"name": name}
        for threads in (default_threads, 1):
            cv2.setNumThreads(threads)
            for w, jpeg in jpegs.items():
                find_faces(decode_image(jpeg, grey=grey), d)
                times = []
                for _ in range(args.reps if w == 320 else max(20, args.reps // 4)):
                    t = time.perf_counter()
                    find_faces(decode_image(jpeg, grey=grey), d)
                    times.append((time.perf_counter() - t) * 1000)
                row[(threads, w)] = statistics.median(times)
        cv2.setNumThreads(default_threads)
        row["found"] = [len(find_faces(decode_image(j, grey=grey), d)[0]) for j in jpegs.values()]
        row["two"] = len(find_faces(two, d)[0])
        row["false"] = sum(len(find_faces(im, d)[0]) for im in others.values())
        rows.append(row)
    print(f"\n**Face detection** · {platform.machine()}, {os.cpu_count()} cores · OpenCV {cv2.__version__} · "
          f"`python bench/bench_detect.py --reps {args.reps}`\n")
    print(f"| settings | 320 px, ms ({default_threads} threads / 1) | 640 px | 1280 px | astronaut found at "
          f"320/640/1280 | two-face frame | faces in {len(others)} pictures without one |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[(default_threads, w)]:.1f} / {r[(1, w)]:.1f}" for w in jpegs]
        print(f"| {r['name']} | {' | '.join(cells)} | {'/'.join(map(str, r['found']))} | {r['two']} of 2 | {r['false']} |")
    print(f"\nMedian of {args.reps} (320 px) or {max(20, args.reps // 4)} runs of decode + detection + crops.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

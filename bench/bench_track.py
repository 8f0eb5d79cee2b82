"""Face tracking against searching every whole frame: detection cost per frame and box steadiness.

    python bench/bench_track.py [--frames 120] [--every 8] [--detector blazeface|blazeface-full|haar]

Three synthetic webcam clips of 320x320 frames made from the astronaut photo
(``skimage.data.astronaut()``), each frame with sensor noise (sigma 2 grey levels) and sent through
the page's JPEG (quality 80):

* ``still``: she sits still;
* ``moving``: the picture sways (up to 30 px sideways and 15 px up and down, at most ~3 px a frame);
* ``enter+leave``: a second, smaller face (her head again) enters at a third of the clip and her own
  face is covered for the last third.

Each frame goes through the pipeline's own step (``fer_core.pipeline.find_in_frame``: decode, faces, crops) three
times, alternately: once searching the whole frame (what the server did before), once with a
``fer_core.track.FaceTracker``, once with a tracker that does not search where nothing moved
(``still``, the server's ``FER_TRACK_STILL``, default 4 grey levels). Reported per clip and method: median ms per frame (wall and CPU), frames with the
right number of faces, and box steadiness: the median and 95th percentile of the frame-to-frame
change of the box (centre shift plus size change, as a fraction of the side) minus the change of
the true face position, i.e. how much the box trembles beyond the face's own motion.
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


def clips(n: int):
    """{name: [(jpeg, true faces, (dx, dy) of the main face)]}."""
    import cv2
    import numpy as np
    from skimage import data

    rng = np.random.default_rng(0)
    ast = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320), interpolation=cv2.INTER_AREA)
    head = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 110:350], (110, 110),
                      interpolation=cv2.INTER_AREA)

    def shot(img):
        noisy = np.clip(img.astype(np.float32) + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
        return cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()

    def moved(dx, dy):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        return cv2.warpAffine(ast, m, (320, 320), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    out = {"still": [(shot(ast), 1, (0.0, 0.0)) for _ in range(n)]}
    sway = [(30 * np.sin(2 * np.pi * k / 60), 15 * np.sin(2 * np.pi * k / 45)) for k in range(n)]
    out["moving"] = [(shot(moved(dx, dy)), 1, (dx, dy)) for dx, dy in sway]
    seq = []
    for k in range(n):
        img = ast.copy()
        faces = 1
        if k >= n // 3:
            img[200:310, 200:310] = head  # bottom right, clear of her own face
            faces += 1
        if k >= 2 * n // 3:
            img[20:150, 90:210] = 128     # her own face covered: it has left
            faces -= 1
        seq.append((shot(img), faces, (0.0, 0.0)))
    out["enter+leave"] = seq
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=120, help="frames per clip")
    ap.add_argument("--every", type=int, default=8, help="the tracker's full search every N frames")
    ap.add_argument("--rounds", type=int, default=3, help="passes over each clip (timing medians over all)")
    ap.add_argument("--hold", type=float, default=0.85, help="the tracker's hold_iou (fer_core/track.py)")
    from fer_core.track import STILL_LEVELS
    ap.add_argument("--still", type=float, default=STILL_LEVELS,
                    help="the third tracker's still, grey levels (default: the server's)")
    from fer_core.config import DEFAULT_DETECTOR, DETECTORS
    ap.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                    help="the face detector (default: the served one; numbers before 2026-11-29 are haar's)")
    args = ap.parse_args(argv)
    import cv2
    import numpy as np
    from fer_core.faces import make_detector
    from fer_core.track import FaceTracker
    from fer_core.pipeline import find_in_frame

    det = make_detector(args.detector)
    rows = []
    for name, clip in clips(args.frames).items():
        methods = ("full", "track", "still")
        ms, cpu, boxes = ({m: [] for m in methods} for _ in range(3))
        right = {m: 0 for m in methods}
        searches = {"full": [len(clip), 0, 0, 0]}
        for rnd in range(args.rounds):
            # as the worker builds it: Faces, so that followed crops are levelled on each frame's eyes
            trackers = {m: FaceTracker.for_detector(det, redetect_every=args.every, hold_iou=args.hold,
                                                    still=args.still if m == "still" else 0.0)
                        for m in ("track", "still")}
            for jpeg, n_true, _ in clip:
                for method in methods:  # alternating: all see the same machine load
                    t, c = time.perf_counter(), time.process_time()
                    b = find_in_frame(jpeg, det, 8, 2_100_000, trackers.get(method)).boxes
                    ms[method].append((time.perf_counter() - t) * 1000)
                    cpu[method].append((time.process_time() - c) * 1000)
                    if rnd == 0:
                        right[method] += len(b) == n_true
                        boxes[method].append(b[0] if len(b) == 1 else None)
            if rnd == 0:
                searches.update({m: [t.full_searches, t.near_searches, t.full_skipped, t.near_skipped]
                                 for m, t in trackers.items()})
        truth = [d for _, _, d in clip]
        for method in methods:
            tremble = []
            bs = boxes[method]
            for k in range(1, len(bs)):
                if bs[k] is None or bs[k - 1] is None:
                    continue
                (x0, y0, w0, h0), (x1, y1, w1, h1) = bs[k - 1], bs[k]
                side = (w0 + w1) / 2
                ddx, ddy = truth[k][0] - truth[k - 1][0], truth[k][1] - truth[k - 1][1]
                shift = np.hypot(x1 + w1 / 2 - x0 - w0 / 2 - ddx, y1 + h1 / 2 - y0 - h0 / 2 - ddy)
                tremble.append((shift + abs(w1 - w0)) / side * 100)
            rows.append({"clip": name, "method": method, "ms": statistics.median(ms[method]),
                         "cpu": statistics.median(cpu[method]), "cpu_mean": statistics.fmean(cpu[method]),
                         "right": right[method], "n": len(clip),
                         "t50": statistics.median(tremble) if tremble else float("nan"),
                         "t95": float(np.percentile(tremble, 95)) if tremble else float("nan"),
                         "searches": searches[method]})
    print(f"\n**Face tracking** · {platform.machine()}, {os.cpu_count()} cores · OpenCV {cv2.__version__} · "
          f"`python bench/bench_track.py --frames {args.frames} --every {args.every} --rounds {args.rounds} --hold {args.hold} "
          f"--detector {args.detector} --still {args.still}`\n")
    print("| clip | method | decode + faces + crops per frame, ms wall / CPU (medians) | CPU, mean, ms | frames with "
          "the right faces | box tremble, % of the side, median / p95 | whole-frame / near searches (put off: "
          "whole / near) |")
    print("|---|---|---|---|---|---|---|")
    names = {"full": "search every frame", "track": f"tracker (whole frame every {args.every})",
             "still": f"tracker, not where nothing moved (still {args.still:g})"}
    for r in rows:
        s = r["searches"]
        print(f"| {r['clip']} | {names[r['method']]} | {r['ms']:.2f} / {r['cpu']:.2f} | {r['cpu_mean']:.2f} | "
              f"{r['right']} of {r['n']} | {r['t50']:.1f} / {r['t95']:.1f} | {s[0]} / {s[1]} ({s[2]} / {s[3]}) |")
    print(f"\nTimes are medians (and means) over {args.rounds} passes of every clip, the methods alternating frame by frame; "
          "CPU is the process's CPU time (all OpenCV threads), steadier than wall time on a shared machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

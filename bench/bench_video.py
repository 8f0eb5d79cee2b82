"""`predict` on a video: the ensemble called once per frame against once per 16 frames.

    python bench/bench_video.py [--models models] [--frames 96] [--repeat 3]

A synthetic clip, 320x320 at 25 frames/s, of the astronaut photo (``skimage.data.astronaut()``)
swaying sideways (up to 30 px), written with OpenCV's mp4v codec. ``fer_core.video.video_frames``
reads every frame with the server's face tracking, once with ``batch_frames=1`` (one ensemble call
per frame) and once with the default ``BATCH_FRAMES`` (the faces of 16 frames in one call),
alternately, ``--repeat`` times; reported: the median wall and CPU seconds per frame of each, and
whether both gave the same labels. Reading, detection and tracking are the same in both; only the
ensemble's calls differ.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_clip(path: Path, frames: int) -> Path:
    import cv2
    import numpy as np
    from skimage import data
    img = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320), interpolation=cv2.INTER_AREA)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 320))
    for k in range(frames):
        out.write(np.roll(img, int(30 * np.sin(k / 10)), axis=1))
    out.release()
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=None)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    from fer_core.predict import Predictor
    from fer_core.video import BATCH_FRAMES, video_frames

    pred = Predictor(a.models)
    pred.warm_up(BATCH_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", a.frames)
        times = {1: [], BATCH_FRAMES: []}
        labels = {}
        for _ in range(a.repeat):
            for b in times:
                w, c = time.perf_counter(), time.process_time()
                frames = list(video_frames(pred, clip, batch_frames=b))
                times[b].append(((time.perf_counter() - w) / len(frames), (time.process_time() - c) / len(frames)))
                labels[b] = [f["label"] for fr in frames for f in fr["faces"]]
    print(f"{a.frames} frames of 320x320, {pred.models_dir.name}/ ({', '.join(pred.member_names)}; views {pred.tta}; "
          f"{pred.runtime}), {os.cpu_count()} CPUs, median of {a.repeat}")
    for b, ts in times.items():
        print(f"batch_frames={b:2d}: {1000 * statistics.median(t[0] for t in ts):6.1f} ms wall, "
              f"{1000 * statistics.median(t[1] for t in ts):6.1f} ms CPU per frame")
    print("same labels:", labels[1] == labels[BATCH_FRAMES], f"({len(labels[1])} faces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

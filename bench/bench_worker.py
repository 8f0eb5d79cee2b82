"""The inference worker's batch step with and without overlapping decoding/detection and the ensemble.

    python bench/bench_worker.py [--models DIR] [--rounds 40] [--runtime auto] [--no-track]

Batches of 16 frames from the ``moving`` clip of bench/bench_track.py (16 clients, each followed by
its own tracker unless ``--no-track``) go through the worker's pipeline
(``fer_core.pipeline.FramePipeline``, the server's settings) with ``prep_chunks`` 0 (decode and
detect the whole batch, then one ensemble call), 2 and 4 (the next part is decoded while the
ensemble runs on this one, in the pipeline's one prep thread). The three take
turns on every round. Reported: median wall and CPU ms per frame.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--no-track", action="store_true", help="search every frame whole")
    args = ap.parse_args(argv)
    from bench_track import clips
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from webapp.config import WebConfig

    p = Predictor(args.models, runtime=args.runtime)
    p.warm_up(16)
    jpegs = [j for j, _, _ in clips(64)["moving"]]
    web = WebConfig()  # the server's limits; the pipeline's defaults are the server's tracking and views
    pipes = {c: FramePipeline(p, max_faces=web.max_faces, max_pixels=web.max_pixels,
                              track_every=0 if args.no_track else web.track_every, prep_chunks=c) for c in (0, 2, 4)}
    for pipe in pipes.values():  # one set of trackers: each setting finds the clients' faces as the last left them
        pipe.trackers = pipes[0].trackers
    clients = None if args.no_track else [f"client{i}" for i in range(16)]
    res = {c: [] for c in pipes}
    for rnd in range(args.rounds):
        k0 = (rnd * 16) % 48
        for chunks, pipe in pipes.items():  # take turns: the same machine load for each
            t, c = time.perf_counter(), time.process_time()
            pipe.process(jpegs[k0:k0 + 16], clients)
            res[chunks].append(((time.perf_counter() - t) * 1000 / 16, (time.process_time() - c) * 1000 / 16))
    print(f"\n**Worker batch step** · {p.runtime} {p.precision}, views {p.tta} · "
          f"{'whole-frame search' if args.no_track else 'tracking'} · {platform.machine()}, {os.cpu_count()} cores · "
          f"`python bench/bench_worker.py {' '.join(sys.argv[1:])}`\n")
    print("| prep_chunks | ms per frame, wall (median) | ms per frame, CPU (median) |")
    print("|---|---|---|")
    for c, v in res.items():
        print(f"| {c}{' (no overlap)' if c == 0 else ''} | {statistics.median(w for w, _ in v):.2f} | "
              f"{statistics.median(x for _, x in v):.2f} |")
    print(f"\nBatches of 16 frames, {args.rounds} rounds, the settings taking turns.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU (or GPU) training throughput per member, for the Keras backend in use.

    python bench/bench_train.py [--members vgg_s,resnet_s,...] [--steps 20]
    KERAS_BACKEND=jax python bench/bench_train.py     # where JAX is installed

Times `train_on_batch` on random 48x48 images with each member's own recipe (augmentation, optimizer,
batch size), after two warm-up steps that compile. Prints a Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fer_core.config import PRECISIONS  # noqa: E402  (no Keras import: --help stays fast)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", default="vgg_s,resnet_s,inc_s,vgg0,resnet2")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="override every member's TrainConfig.precision ('auto' picks by the hardware)")
    args = ap.parse_args(argv)

    import keras
    import numpy as np

    from fer_core.config import member_spec
    from fer_core.models import build
    from fer_core.train import training_model, training_precision

    rows = []
    for name in args.members.split(","):
        spec = member_spec(name)
        cfg = spec.train_config(precision=args.precision)
        precision = training_precision(cfg.precision)
        keras.mixed_precision.set_global_policy(precision)
        net = build(spec.arch, **dict(spec.kwargs, name=name))
        model = training_model(net, cfg, 100)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (cfg.batch_size, 48, 48, 1)).astype("float32")
        y = np.eye(7, dtype="float32")[rng.integers(0, 7, cfg.batch_size)]
        for _ in range(2):
            model.train_on_batch(x, y)
        t = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        dt = time.perf_counter() - t
        ips = args.steps * cfg.batch_size / dt
        rows.append((name, net.count_params(), cfg.batch_size, cfg.augment, precision, ips, 28709 / ips / 60))
        print(f"{name} ({precision}): {ips:.0f} images/s", file=sys.stderr, flush=True)
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()

    flag = f" --precision {args.precision}" if args.precision else ""
    print(f"\nBackend `{keras.backend.backend()}` (Keras {keras.__version__}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, `python bench/bench_train.py --members {args.members} --steps {args.steps}{flag}`\n")
    print("| member | parameters | batch | augmentation | precision | training images/s | minutes per FER2013 epoch |")
    print("|---|---|---|---|---|---|---|")
    for name, params, bs, aug, precision, ips, mins in rows:
        print(f"| {name} | {params:,} | {bs} | {'yes' if aug else 'no'} | {precision} | {ips:.0f} | {mins:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does each member train and predict on this machine? One training step and one prediction per
member, in child processes, so that a member that crashes the runtime (a segfault in a native
kernel, as TensorFlow's oneDNN does on some CPUs) is reported by name instead of killing the caller.

    python -m fer_core.smoke [NAME ...]     # one member per registered architecture by default; exit 1 on a failure

A child runs the members in turn and prints ``start NAME`` / ``ok NAME``; when it dies, the member
it had started is the one that crashed, and a new child goes on with the rest. Each step uses the
member's own recipe (augmentation, optimizer, batch size, precision on this machine) on random
faces, so it exercises the same kernels as ``train_all.py`` at the cost of one batch.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What a child runs: this module, with the member names to check.
CHILD = (sys.executable, "-m", "fer_core.smoke", "--child")


@dataclass(frozen=True)
class Failure:
    member: str
    reason: str      # "killed by SIGSEGV", "exit status 1: <last line>", "timed out after 300 s"

    def __str__(self) -> str:
        return (f"{self.member}: {self.reason}; reproduce with `python -m fer_core.smoke {self.member}` "
                f"(`python train_all.py --members {self.member}` trains it)")


def step(name: str) -> None:
    """Build ``name`` as training does, run one training step and one prediction."""
    import numpy as np

    import keras
    from .config import member_spec
    from .models import build
    from .train import training_model, training_precision

    spec = member_spec(name)
    cfg = spec.train_config()
    keras.mixed_precision.set_global_policy(training_precision(cfg.precision))
    try:
        net = build(spec.arch, **dict(spec.kwargs, num_classes=cfg.classes, name=name))
        model = training_model(net, cfg, steps_per_epoch=100)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (cfg.batch_size, 48, 48, 1)).astype("float32")
        y = np.eye(cfg.classes, dtype="float32")[rng.integers(0, cfg.classes, cfg.batch_size)]
        loss = model.train_on_batch(x, y)[0]
        p = net.predict(x[:8], verbose=0)
        if not np.isfinite(loss) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-2):
            raise RuntimeError(f"{name}: loss {loss!r}, probability sums {p.sum(axis=1)!r}")
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def distinct(names) -> list[str]:
    """``names`` less those that would run the same kernels as one before them: the same architecture
    and widths, batch size, augmentation, classes and precision (seeds, schedules, optimizers and
    parents do not change which kernels a step runs)."""
    import json

    from .config import member_spec

    seen, kept = set(), []
    for n in names:
        spec = member_spec(n)
        cfg = spec.train_config()
        key = (spec.arch, json.dumps(spec.kwargs, sort_keys=True, default=str), cfg.batch_size, cfg.augment,
               cfg.classes, cfg.precision)
        if key not in seen:
            seen.add(key)
            kept.append(n)
    return kept


def check(names, timeout: float = 300.0, command=CHILD) -> list[Failure]:
    """Every member in ``names`` stepped in child processes; the failures, in order (empty: all ran).

    ``timeout`` bounds each member's step; ``command`` is the child's argv before the names (a test
    can put a crashing child there)."""
    names, failures = list(names), []
    while names:
        done, started, why = set(), [], None
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([*command, *names], stdout=subprocess.PIPE, stderr=err)
            deadline = time.monotonic() + timeout
            fd, pending = proc.stdout.fileno(), b""
            with proc.stdout:  # read the fd itself: a buffered readline would hide lines from select
                while True:
                    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                    if not ready:
                        proc.kill()
                        why = f"timed out after {timeout:.0f} s"
                        break
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        kind, _, name = line.decode("utf-8", "replace").strip().partition(" ")
                        if kind == "start":
                            started.append(name)
                            deadline = time.monotonic() + timeout  # each member has the whole bound
                        elif kind == "ok":
                            done.add(name)
            code = proc.wait()
            err.seek(0)
            tail = (err.read().decode("utf-8", "replace").strip().splitlines() or [""])[-1][-200:]
        if code == 0 and why is None and done >= set(names):
            break
        # The member started and not finished; else the first not reached (the child died loading);
        # else, all done but the child died on its way out, the last one.
        culprit = (next((n for n in started if n not in done), None)
                   or next((n for n in names if n not in done), None) or names[-1])
        if why is None:
            why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}: {tail}"
        failures.append(Failure(culprit, why))
        names = [n for n in names if n not in done and n != culprit]
    return failures


def _child(names) -> int:
    for name in names:
        print(f"start {name}", flush=True)
        step(name)  # an exception ends the child with its traceback: the parent names the member
        print(f"ok {name}", flush=True)
    return 0


def main(argv=None) -> int:
    import argparse

    from .config import MEMBERS, QUICK_MEMBERS, member_spec

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="members (default: every registered architecture, one member each)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one member's step may take")
    args = p.parse_args(argv)
    names = args.names or distinct([*MEMBERS, *QUICK_MEMBERS])
    for n in names:
        member_spec(n)  # an unknown name is a usage error, not a member that failed
    failures = check(names, timeout=args.timeout)
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    print(f"{len(names) - len(failures)} of {len(names)} members trained one step and predicted")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Reproduce TensorFlow oneDNN's crash in strided convolutions on AVX-512 CPUs, with the smallest stack.

    python bench/repro_onednn.py                      # every case, this CPU's own ISA and AVX2
    python bench/repro_onednn.py --isa AVX512_CORE    # oneDNN limited to one ISA (ONEDNN_MAX_CPU_ISA)

Each case is one Keras convolution (48x48 input, ``ic`` channels in, ``oc`` out, kernel ``k``, stride
``s``, 'same' padding) under a global average pool and a softmax, run once for inference and once for
one training step (SGD) at batch ``mb``, each in a child process, so that a segfault is a row of the
table rather than the end of the script. Prints a Markdown table; exit status 1 when any case crashed.

What it pins (docs/training.md, "oneDNN on AMD Zen 4"): the project's tiny ``resnet_q`` died in its
first training step on AMD EPYC Zen 4 (avx512f, avx512_bf16, avx512_vnni, no AMX) with oneDNN at
AVX512_CORE or above, and trained with ``ONEDNN_MAX_CPU_ISA=AVX2`` or ``TF_ENABLE_ONEDNN_OPTS=0``.
Its last logged primitive was the reorder of a 16x8x1x1 weight to the padded ``Bcda16b`` layout that
the strided backward-data kernel (``brgconv_strided``) then reads: the projection shortcut, 1x1,
stride 2, 8 channels in (not a multiple of the 16-lane block). The cases below vary each of those.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

# (kernel, stride, channels in, channels out): the suspect first, then one change at a time.
CASES = [(1, 2, 8, 16), (3, 2, 8, 16), (1, 1, 8, 16), (1, 2, 16, 32), (3, 2, 16, 32), (1, 2, 24, 48)]

CHILD = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
k, s, ic, oc, mb, train = (int(v) for v in sys.argv[1:7])
x_in = keras.Input((48, 48, ic))
y = keras.layers.Conv2D(oc, k, strides=s, padding="same")(x_in)
y = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(y))
model = keras.Model(x_in, y)
model.compile(optimizer="sgd", loss="categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.normal(size=(mb, 48, 48, ic)).astype("float32")
t = np.eye(4, dtype="float32")[rng.integers(0, 4, mb)]
for _ in range(3):
    model.train_on_batch(x, t) if train else model.predict(x, verbose=0)
print("ok")
"""


def run_case(k, s, ic, oc, mb, train, isa) -> str:
    env = dict(os.environ)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, *map(str, (k, s, ic, oc, mb, int(train)))],
                           capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        return "timed out"
    if p.returncode == 0 and "ok" in p.stdout:
        return "ok"
    if p.returncode < 0:
        import signal
        return f"**crashed ({signal.Signals(-p.returncode).name})**"
    return f"**failed (exit {p.returncode})**"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", action="append",
                    help="ONEDNN_MAX_CPU_ISA value(s) to try (default: the CPU's own, then AVX2)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (resnet_q's: 64)")
    args = ap.parse_args(argv)
    isas = args.isa or ["", "AVX2"]
    import tensorflow as tf
    print(f"TensorFlow {tf.__version__}, {cpu_model()}, batch {args.batch}, "
          f"`python bench/repro_onednn.py{''.join(f' --isa {i}' for i in args.isa or [])}`\n")
    print("| kernel, stride | channels in -> out | oneDNN ISA | inference | one training step |")
    print("|---|---|---|---|---|")
    crashed = False
    for k, s, ic, oc in CASES:
        for isa in isas:
            inf = run_case(k, s, ic, oc, args.batch, False, isa)
            trn = run_case(k, s, ic, oc, args.batch, True, isa)
            crashed |= inf != "ok" or trn != "ok"
            print(f"| {k}x{k}, {s} | {ic} -> {oc} | {isa or 'CPU default'} | {inf} | {trn} |", flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

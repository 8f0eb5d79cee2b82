"""What a face costs, in operations, and what this machine delivers, in operations per second.

``model_gflop`` counts a model's multiply-adds in its convolutions and dense layers (2 FLOP each;
batch norm, pooling and activations are a few percent and left out), from the layers' own shapes.
``ensemble_gflop_per_face`` multiplies by the test-time views. ``matmul_gflops`` measures numpy's
float32 matrix product, the yardstick of the capacity index (docs/benchmarks.md): faces/s at 30
clients / matmul GFLOP/s x 100, so that machines and days of different speed compare.
"""
from __future__ import annotations

import math
import time

import numpy as np


def _layer_macs(layer) -> int:
    import keras

    name = type(layer).__name__
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D,
                              keras.layers.SeparableConv2D)):
        return 0
    out = tuple(layer.output.shape)
    cin = int(layer.input.shape[-1])
    positions = math.prod(int(d) for d in out[1:-1])  # output pixels (1 for a dense layer on a vector)
    cout = int(out[-1])
    if name == "Dense":
        return positions * cin * cout
    kh, kw = layer.kernel_size
    if name == "DepthwiseConv2D":
        return positions * kh * kw * cin * layer.depth_multiplier
    if name == "SeparableConv2D":
        return positions * (kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * cout)
    groups = getattr(layer, "groups", 1)
    return positions * kh * kw * (cin // groups) * cout


def _layers(model):
    """Every layer of a model, nested models' layers included (the ensemble nests its members)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def model_gflop(model) -> float:
    """GFLOP of one image through ``model`` (conv and dense multiply-adds x 2)."""
    return 2 * sum(_layer_macs(l) for l in _layers(model)) / 1e9


def ensemble_gflop_per_face(models, views: int) -> float:
    """GFLOP of one face through every member, ``views`` test-time views each."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views!r}")
    return views * sum(model_gflop(m) for m in models)


def matmul_gflops(n: int = 1024, seconds: float = 2.0, reps_min: int = 5) -> float:
    """numpy's float32 (n x n) @ (n x n), all BLAS threads: the median GFLOP/s over repeated calls
    for about ``seconds`` (a median, because other processes share the cores)."""
    if n < 16 or seconds <= 0:
        raise ValueError(f"need n >= 16 and seconds > 0, got n={n!r}, seconds={seconds!r}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # BLAS thread start-up and page faults out of the timing
    rates, end = [], time.perf_counter() + seconds
    while len(rates) < reps_min or time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return float(np.median(rates))


def capacity_index(faces_per_s: float, gflops: float) -> float:
    """faces/s at 30 clients per matmul GFLOP/s of the same run, x 100."""
    if gflops <= 0:
        raise ValueError(f"gflops must be positive, got {gflops!r}")
    return faces_per_s / gflops * 100

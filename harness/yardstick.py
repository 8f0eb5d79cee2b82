"""What this machine delivers, for the benchmarks: numpy's float32 matrix product in GFLOP/s, the
yardstick of the capacity index (docs/benchmarks.md): faces/s at 30 clients / matmul GFLOP/s x 100,
so that machines and days of different speed compare. What a face costs is the engine's
(``fer_core.cost``); what a machine delivers matters to the benchmarks alone."""
from __future__ import annotations

import time

import numpy as np


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

"""Combining members' softmax outputs, and choosing which members to combine.

Rules (weights ``w`` of shape (members, classes); ensemble probability ``P[c] = sum_m w[m, c] p_m[c]``):
  - ``average``: w[m, c] = 1 / M.
  - ``accuracy``: w[m, c] = acc_m / sum_k acc_k, acc_m the member's validation accuracy.
  - ``class_recall`` (the report's best): w[m, c] = r_m[c] / sum_k r_k[c], r_m[c] the member's
    validation recall of class c, normalised per class across members.
Weights and subsets are always computed on the validation split (PublicTest), never on the test split.

Subsets: every subset of ``min_size``..``max_size`` members is scored; with member ``costs`` (GFLOP per
face) and a ``budget``, only subsets with ``sum(costs[subset]) <= budget`` are, and ``min_size`` is
lowered to the most members that fit (the cheapest ones), so a budget never leaves nothing to choose.
"""
from __future__ import annotations

import itertools

import numpy as np

RULES = ("average", "accuracy", "class_recall")


def rule_weights(rule: str, val_probs: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """Weights (M, C) for ``rule`` from members' validation probabilities ``val_probs`` (M, N, C)."""
    val_probs = np.asarray(val_probs)
    if val_probs.ndim != 3:
        raise ValueError(f"val_probs must have shape (members, images, classes), got {val_probs.shape}")
    m, _, c = val_probs.shape
    y_val = np.asarray(y_val)
    pred = val_probs.argmax(-1)  # (M, N)
    if rule == "average":
        return np.full((m, c), 1.0 / m)
    if rule == "accuracy":
        acc = (pred == y_val).mean(1)
        if acc.sum() == 0:  # no member gets anything right: equal weights rather than 0/0
            return np.full((m, c), 1.0 / m)
        return np.repeat((acc / acc.sum())[:, None], c, axis=1)
    if rule == "class_recall":
        recall = np.zeros((m, c))
        for k in range(c):
            mask = y_val == k
            recall[:, k] = (pred[:, mask] == k).mean(1) if mask.any() else 1.0
        total = recall.sum(0, keepdims=True)
        # A class no member ever gets right falls back to equal weights rather than 0/0.
        return np.where(total > 0, recall / np.where(total > 0, total, 1), 1.0 / m)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def combine(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Ensemble probabilities (N, C) from members' (M, N, C) and weights (M, C), renormalised."""
    probs = np.asarray(probs)
    weights = np.asarray(weights)
    if probs.ndim != 3 or weights.shape != (probs.shape[0], probs.shape[2]):
        raise ValueError(f"weights {weights.shape} do not fit probabilities {probs.shape}")
    p = np.einsum("mnc,mc->nc", probs, weights)
    return p / np.clip(p.sum(-1, keepdims=True), 1e-12, None)


def select_subset(val_probs: np.ndarray, y_val: np.ndarray, rule: str, min_size: int = 6,
                  max_size: int = 11, costs=None, budget: float | None = None) -> tuple[tuple[int, ...], float]:
    """Score every subset of ``min_size``..``max_size`` members (clipped to what exists, and to what
    fits ``budget`` given ``costs``) on the validation split; return the best (indices, accuracy).
    Ties go to the smaller subset: it is cheaper per frame."""
    val_probs = np.asarray(val_probs)
    m = len(val_probs)
    if m == 0:
        raise ValueError("no members to choose from")
    fits = lambda subset: True  # noqa: E731
    lo, hi = max(1, min(min_size, m)), max(1, min(max_size, m))
    if budget is not None:
        costs = np.asarray(costs, dtype=np.float64)
        if costs.shape != (m,):
            raise ValueError(f"costs must have one value per member ({m}), got shape {costs.shape}")
        most = int((np.cumsum(np.sort(costs)) <= budget + 1e-9).sum())
        if most == 0:
            raise ValueError(f"no member fits the budget of {budget} GFLOP per face (the cheapest costs "
                             f"{costs.min():.3g}; train_all.py --max-gflop 0 lifts it)")
        lo, hi = min(lo, most), min(hi, most)
        fits = lambda subset: costs[list(subset)].sum() <= budget + 1e-9  # noqa: E731
    y_val = np.asarray(y_val)
    best, best_acc = None, -1.0
    for k in range(lo, hi + 1):
        for subset in itertools.combinations(range(m), k):
            if not fits(subset):
                continue
            vp = val_probs[list(subset)]
            acc = float((combine(vp, rule_weights(rule, vp, y_val)).argmax(-1) == y_val).mean())
            if acc > best_acc + 1e-12:
                best, best_acc = subset, acc
    return best, best_acc


def choose(val_probs: np.ndarray, y_val: np.ndarray, names: list[str], min_size: int = 6,
           max_size: int = 11, rules=RULES, costs=None, budget: float | None = None) -> dict:
    """The best (rule, subset) on the validation split, with its weights: the ensemble spec."""
    best = None
    for rule in rules:
        subset, acc = select_subset(val_probs, y_val, rule, min_size, max_size, costs, budget)
        if best is None or acc > best["val_accuracy"] + 1e-12:
            vp = np.asarray(val_probs)[list(subset)]
            best = {"members": [names[i] for i in subset], "rule": rule,
                    "weights": rule_weights(rule, vp, y_val).round(6).tolist(), "val_accuracy": acc}
    return best

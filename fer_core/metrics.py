"""Accuracy, per-class recall and confusion matrices, and the report's table layout."""
from __future__ import annotations

import numpy as np

from .labels import labels_for, to_6_labels, to_6_probs


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def scores(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Overall accuracy, per-class recall (named) and the confusion matrix of ``probs`` (N, C)."""
    probs = np.asarray(probs)
    c = probs.shape[-1]
    names = labels_for(c)
    pred = probs.argmax(-1)
    cm = confusion(y_true, pred, c)
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(c), where=support > 0)
    return {"accuracy": float((pred == np.asarray(y_true)).mean()) if len(pred) else 0.0,
            "recall": {n: float(r) for n, r in zip(names, recall)},
            "confusion": cm.tolist(), "n": int(len(pred))}


def both_protocols(y7: np.ndarray, p7: np.ndarray) -> dict:
    """Scores on the 7-class protocol and on the report's 6-class one (probabilities merged)."""
    if p7.shape[-1] == 6:  # a 6-class model is only scored on the 6-class protocol
        return {"6": scores(to_6_labels(y7), p7)}
    return {"7": scores(y7, p7), "6": scores(to_6_labels(y7), to_6_probs(p7))}


def markdown_table(rows: dict[str, dict], classes: int, title: str = "") -> str:
    """The report's layout: one row per model, one column per class recall, then overall accuracy."""
    names = labels_for(classes)
    head = "| model | " + " | ".join(n.capitalize() for n in names) + " | Overall |"
    sep = "|" + "---|" * (len(names) + 2)
    lines = [f"**{title}**", "", head, sep] if title else [head, sep]
    for model, s in rows.items():
        cells = [f"{100 * s['recall'][n]:.1f}" for n in names]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | **{100 * s['accuracy']:.2f}** |")
    return "\n".join(lines) + "\n"

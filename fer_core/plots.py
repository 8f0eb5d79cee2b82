"""The pictures of a models folder: each member's training curves and the ensemble's confusion matrix,
drawn off-screen and written atomically as PNG (fer_core.store)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from . import store


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display: servers, CI, a GPU box over SSH
    import matplotlib.pyplot as plt
    return plt


def _write(plt, fig, path: Path) -> None:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    store.atomic_write_bytes(path, buf.getvalue())


def curves_png(log_csv: Path, png: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, training and PublicTest, from a member's log.csv."""
    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    plt = _pyplot()
    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    a.plot(ep, [float(r["loss"]) for r in rows], label="train")
    a.plot(ep, [float(r["val_loss"]) for r in rows], label="PublicTest")
    a.set_title("loss"); a.set_xlabel("epoch"); a.legend()
    b.plot(ep, [float(r["accuracy"]) for r in rows], label="train")
    b.plot(ep, [float(r["val_accuracy"]) for r in rows], label="PublicTest")
    b.set_title("accuracy"); b.set_xlabel("epoch"); b.legend()
    fig.suptitle(title)
    _write(plt, fig, png)


def confusion_png(cm, labels, path: Path, title: str) -> None:
    """A confusion matrix as % of each true class's row."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=80)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title(title)
    _write(plt, fig, path)

"""The pictures of a models folder: each member's training curves, the ensemble's confusion matrix and
the training campaign's progress, drawn off-screen and written atomically as PNG (fer_core.store)."""
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


# models/campaign.csv: one row per ensemble that shipped, its accuracies against the training hours.
# Its reader stays beside its plot, which /admin shows with the folder's other pictures and which is
# drawn with their matplotlib set-up and atomic write (scripts/plot_campaign.py calls both).
CAMPAIGN_COLUMNS = ("training_hours", "publictest_7", "privatetest_7", "privatetest_6")
CAMPAIGN_TARGETS = {"report (6 classes)": 71.52, "our bar (7 and 6 classes)": 72.5}


def read_campaign(path: Path) -> list[dict]:
    """Rows of a campaign log with the numeric columns as floats; ValueError names a bad row."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in CAMPAIGN_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (has {list(rows[0])})")
    for i, r in enumerate(rows, start=2):
        for c in CAMPAIGN_COLUMNS:
            try:
                r[c] = float(r[c])
            except ValueError:
                raise ValueError(f"{path}:{i}: {c} is not a number: {r[c]!r}") from None
    return rows


def campaign_png(rows: list[dict], png: Path) -> None:
    """The shipped ensemble's PublicTest and PrivateTest accuracy against the training hours spent."""
    plt = _pyplot()
    h = [r["training_hours"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90)
    for col, name, style in (("publictest_7", "PublicTest, 7 classes (chooses)", "o-"),
                             ("privatetest_7", "PrivateTest, 7 classes (reported)", "s-"),
                             ("privatetest_6", "PrivateTest, 6 classes", "^--")):
        ax.plot(h, [r[col] for r in rows], style, label=name)
    for name, y in CAMPAIGN_TARGETS.items():
        ax.axhline(y, color="grey", lw=0.8, ls=":")
        ax.text(0.01, y + 0.08, name, fontsize=7, color="dimgrey", transform=ax.get_yaxis_transform())
    ax.set_xlim(0, max(h) * 1.05)
    ax.set_xlabel("training hours spent on the 2-core CPU machine (cumulative)")
    ax.set_ylabel("ensemble accuracy, %")
    ax.set_title("FER2013 training campaign")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _write(plt, fig, png)

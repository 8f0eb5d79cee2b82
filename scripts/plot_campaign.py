"""Plot the training campaign: the shipped ensemble's accuracy against the training hours spent.

    python scripts/plot_campaign.py [models/campaign.csv] [models/campaign.png]

models/campaign.csv has one row per ensemble that shipped (or was re-chosen): the cumulative hours
of training on this project's 2-core CPU machine, every member trained counted (chosen or not), and
the accuracies measured by `python -m fer_core evaluate`. The PNG is linked from the README and shown
on /admin.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = ("training_hours", "publictest_7", "privatetest_7", "privatetest_6")
TARGETS = {"report (6 classes)": 71.52, "our bar (7 and 6 classes)": 72.5}


def read_campaign(path: Path) -> list[dict]:
    """Rows of the campaign log with the numeric columns as floats; ValueError names a bad row."""
    rows = list(csv.DictReader(open(path, newline="")))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (has {list(rows[0])})")
    for i, r in enumerate(rows, start=2):
        try:
            for c in COLUMNS:
                r[c] = float(r[c])
        except ValueError:
            raise ValueError(f"{path}:{i}: {c} is not a number: {r[c]!r}") from None
    return rows


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_core import store

    h = [r["training_hours"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90)
    for col, name, style in (("publictest_7", "PublicTest, 7 classes (chooses)", "o-"),
                             ("privatetest_7", "PrivateTest, 7 classes (reported)", "s-"),
                             ("privatetest_6", "PrivateTest, 6 classes", "^--")):
        ax.plot(h, [r[col] for r in rows], style, label=name)
    for name, y in TARGETS.items():
        ax.axhline(y, color="grey", lw=0.8, ls=":")
        ax.text(0.01, y + 0.08, name, fontsize=7, color="dimgrey", transform=ax.get_yaxis_transform())
    ax.set_xlim(0, max(h) * 1.05)
    ax.set_xlabel("training hours spent on the 2-core CPU machine (cumulative)")
    ax.set_ylabel("ensemble accuracy, %")
    ax.set_title("FER2013 training campaign")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    store.atomic_write_bytes(png, buf.getvalue())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else ROOT / "models" / "campaign.csv"
    png = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".png")
    plot(read_campaign(src), png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

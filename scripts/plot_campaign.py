"""Plot the training campaign: the shipped ensemble's accuracy against the training hours spent.

    python scripts/plot_campaign.py [models/campaign.csv] [models/campaign.png]

models/campaign.csv has one row per ensemble that shipped (or was re-chosen): the cumulative hours
of training on this project's 2-core CPU machine, every member trained counted (chosen or not), and
the accuracies measured by `python -m fer_core evaluate`. The PNG is linked from the README and shown
on /admin (fer_core/plots.py draws it).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from fer_core.plots import campaign_png, read_campaign

    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else ROOT / "models" / "campaign.csv"
    png = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".png")
    campaign_png(read_campaign(src), png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The campaign log (models/campaign.csv) and its plot: the shipped log parses, and a bad log is a clear error."""
import subprocess
import sys
from pathlib import Path

import pytest

from fer_core import plots as campaign

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_log_is_cumulative_and_ends_at_the_shipped_ensemble():
    import json

    rows = campaign.read_campaign(ROOT / "models" / "campaign.csv")
    hours = [r["training_hours"] for r in rows]
    assert hours == sorted(hours) and hours[0] > 0
    # the last row is the ensemble that ships: same members, same PublicTest accuracy as ensemble.json
    spec = json.loads((ROOT / "models" / "ensemble.json").read_text())
    assert set(rows[-1]["ensemble"].split("+")) == set(spec["members"])
    assert rows[-1]["views"] == spec["tta"]
    assert rows[-1]["publictest_7"] == pytest.approx(100 * spec["val_accuracy"], abs=0.006)


def test_the_script_draws_the_plot(tmp_path):
    out = tmp_path / "c.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_campaign.py"), str(ROOT / "models" / "campaign.csv"),
                    str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_log_names_the_row(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("date,training_hours,publictest_7,privatetest_7,privatetest_6\nx,1.5,68,69,seventy\n")
    with pytest.raises(ValueError, match=r"c.csv:2: privatetest_6 is not a number: 'seventy'"):
        campaign.read_campaign(bad)
    bad.write_text("date,hours\nx,1\n")
    with pytest.raises(ValueError, match="missing"):
        campaign.read_campaign(bad)

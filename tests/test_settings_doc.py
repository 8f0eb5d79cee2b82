"""The settings table of docs/webapp.md against the code: one row per environment variable that
``WebConfig.from_env`` reads, and each default as ``WebConfig`` has it."""
import re
from pathlib import Path

from webapp.config import ENV, WebConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "webapp.md"


def table() -> dict[str, str]:
    """{variable: its default as the table writes it} for every row of a ``FER_*`` table."""
    rows = re.findall(r"^\| `(FER_[A-Z0-9_]+)` \| `?([^|`]*)`? \|", DOC.read_text(), re.M)
    names = [n for n, _ in rows]
    assert len(names) == len(set(names)), f"rows twice: {sorted({n for n in names if names.count(n) > 1})}"
    return dict(rows)


def test_every_setting_has_one_row_and_no_row_is_unknown():
    rows = table()
    assert sorted(set(ENV.values()) - set(rows)) == [], "settings the table leaves out"
    assert sorted(set(rows) - set(ENV.values())) == [], "rows for settings the code does not read"


def test_the_table_gives_the_codes_defaults():
    rows, default = table(), WebConfig()
    for field, name in ENV.items():
        value, written = getattr(default, field), rows[name].strip()
        if value is None:  # a default the table describes in words (unset, the models folder's, ...)
            continue
        if isinstance(value, bool):
            assert written == ("1" if value else "0"), (name, written, value)
        elif isinstance(value, (int, float)):
            assert float(written) == value, (name, written, value)
        else:
            assert written == str(value), (name, written, value)

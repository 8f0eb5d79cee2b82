"""The two settings tables of docs/webapp.md against the code, both ways: the operator's table holds
one row per variable of ``OPERATOR_VARIABLES`` (the models folder's and ``OPERATOR_ENV``), the
tuning table one per variable of ``TUNING_ENV``, no other row, each default as ``WebConfig`` has it;
and the documents name no ``FER_*`` variable that nothing reads."""
import re
from pathlib import Path

from fer_core import quiet, runtime, store
from webapp.config import ENV, OPERATOR_ENV, OPERATOR_VARIABLES, RETIRED_ENV, TUNING_ENV, WebConfig

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "webapp.md"
OPERATOR, TUNING = "## Settings", "### For benchmarks and tuning"


def section(text: str, heading: str) -> str:
    """``heading``'s part of ``text``: up to the next heading of any level."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    nxt = re.search(r"^#{1,6} ", text[start:], re.M)
    return text[start:start + nxt.start()] if nxt else text[start:]


def table(heading: str) -> dict[str, str]:
    """{variable: its default as the table writes it} for the rows of ``heading``'s table."""
    rows = re.findall(r"^\| `(FER_[A-Z0-9_]+)` \| `?([^|`]*)`? \|", section(DOC.read_text(), heading), re.M)
    names = [n for n, _ in rows]
    assert len(names) == len(set(names)), f"rows twice: {sorted({n for n in names if names.count(n) > 1})}"
    return dict(rows)


def test_the_operator_table_holds_the_operator_settings_and_nothing_else():
    rows = table(OPERATOR)
    assert sorted(set(OPERATOR_VARIABLES) - set(rows)) == [], "operator settings the table leaves out"
    assert sorted(set(rows) - set(OPERATOR_VARIABLES)) == [], "rows that are no operator setting"
    assert list(rows) == list(OPERATOR_VARIABLES), "the table's order is the code's"


def test_the_tuning_table_holds_the_tuning_settings_and_nothing_else():
    rows = table(TUNING)
    assert sorted(set(TUNING_ENV.values()) - set(rows)) == [], "tuning settings the table leaves out"
    assert sorted(set(rows) - set(TUNING_ENV.values())) == [], "rows that are no tuning setting"
    assert list(rows) == list(TUNING_ENV.values()), "the table's order is the code's"


def test_each_setting_is_in_one_group_and_every_variable_sets_a_field():
    assert not set(OPERATOR_ENV) & set(TUNING_ENV) and ENV == {**OPERATOR_ENV, **TUNING_ENV}
    assert len(set(ENV.values())) == len(ENV) and store.MODELS_ENV not in ENV.values()
    fields = {f.name for f in WebConfig.__dataclass_fields__.values()}
    assert set(ENV) <= fields
    # what has no variable: the models folder (fer_core.store reads FER_MODELS) and the tests' switch
    assert fields - set(ENV) == {"models_dir", "worker_start"}
    assert not set(RETIRED_ENV) & set(ENV.values())


def test_the_tables_give_the_codes_defaults():
    rows, default = {**table(OPERATOR), **table(TUNING)}, WebConfig()
    assert rows[store.MODELS_ENV] == f"{store.DEFAULT_MODELS.name}/"
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


def test_the_documents_name_only_variables_that_something_reads():
    """README.md and docs/ (but the dated design notes of history.md, which quote settings of their
    day) mention no FER_* variable but the settings, the retired ones (each server start refuses
    them by name), and the engine's and the tests' own."""
    known = {*ENV.values(), store.MODELS_ENV, *RETIRED_ENV, runtime.CACHE_ENV, quiet.VERBOSE_ENV, "FER_BROWSER_MODELS"}
    unknown = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if doc.name == "history.md":
            continue
        text = doc.read_text()
        for name in set(re.findall(r"\bFER_[A-Z0-9_]*[A-Z0-9]\b", text)) - known:
            unknown.setdefault(name, []).append(doc.name)
        for name in set(RETIRED_ENV) & set(re.findall(r"\bFER_[A-Z0-9_]*[A-Z0-9]\b", text)):
            # a retired name is named as retired, never as a setting to use
            for para in (p for p in text.split("\n\n") if re.search(rf"\b{name}\b", p)):
                assert re.search(r"retired|no longer", para), f"{doc.name}: {name} named as a setting: {para[:200]}"
    assert not unknown, f"variables that nothing reads: {unknown}"

"""Scores and the report's tables (fer_core/metrics.py), on predictions worked out by hand."""
import numpy as np
import pytest

from fer_core.metrics import both_protocols, markdown_tables, report_tables

# Four images: angry, happy, happy, neutral (7-class indices 0, 3, 3, 6).
Y = np.array([0, 3, 3, 6])


def one_hot(pred):
    return np.eye(7)[pred]


# a: right on 0, 1 and 3 (recall angry 1, happy .5, neutral 1; accuracy .75)
# b: right on 1 and 2 only (recall happy 1; accuracy .5); it calls the angry face disgust, which the
#    6-class protocol merges into angry: right there too (accuracy .75)
A, B = both_protocols(Y, one_hot([0, 3, 6, 6])), both_protocols(Y, one_hot([1, 3, 3, 0]))


def metrics(**over):
    m = {"tta": "zoom-flip",
         "members": {"a": {"PublicTest": A, "PrivateTest": A}, "b": {"PublicTest": B, "PrivateTest": B}},
         "rules": {"average": {"PublicTest": B, "PrivateTest": B}},
         "ensemble": {"PublicTest": A, "PrivateTest": A},
         "chosen": {"members": ["a"], "rule": "average", "tta": "flip"}}
    m.update(over)
    return m


def test_one_table_per_split_and_protocol_with_every_model():
    tables = report_tables(metrics())
    assert [(t["split"], t["classes"]) for t in tables] == [
        ("PublicTest", 7), ("PublicTest", 6), ("PrivateTest", 7), ("PrivateTest", 6)]
    t7, t6 = tables[0], tables[1]
    assert t7["labels"][:2] == ["angry", "disgust"] and "disgust" not in t6["labels"]
    assert t7["n"] == 4 and t7["tta"] == "zoom-flip"
    assert [(r["name"], r["kind"]) for r in t7["rows"]] == [
        ("a", "member"), ("b", "left_out"), ("ensemble: average", "rule"), ("ensemble (chosen: average)", "ensemble")]
    a, b = t7["rows"][0], t7["rows"][1]
    assert a["accuracy"] == 75.0 and b["accuracy"] == 50.0
    assert dict(zip(t7["labels"], a["recall"])) == {"angry": 100.0, "disgust": 0.0, "fear": 0.0, "happy": 50.0,
                                                    "sad": 0.0, "surprise": 0.0, "neutral": 100.0}
    assert [r["best"] for r in t7["rows"]] == [True, False, False, True]
    # 6 classes: b's "disgust" for the angry face counts as angry
    assert t6["rows"][1]["accuracy"] == 75.0 and t6["rows"][1]["recall"][0] == 100.0
    assert all(r["best"] for r in t6["rows"][:2])


def test_selection_missing_scores_and_the_views_label():
    only = report_tables(metrics(), split="PrivateTest", classes="6")
    assert [(t["split"], t["classes"]) for t in only] == [("PrivateTest", 6)]
    damaged = metrics(members={"a": {"PublicTest": {"7": {"accuracy": 1.0}}}, "b": None}, rules={}, ensemble={})
    assert report_tables(damaged) == []  # no score with recalls: no table rather than an error
    assert report_tables(metrics(ensemble={"PublicTest": A}))[2]["rows"][-1]["name"] == "ensemble: average"
    old = metrics()
    del old["tta"]  # a metrics.json from before its own label: the chosen ensemble's views
    assert report_tables(old)[0]["tta"] == "flip"
    with pytest.raises(ValueError, match="'sideways'"):
        report_tables(metrics(tta="sideways"))


def test_markdown_is_the_report_layout():
    text = markdown_tables(metrics(), split="PublicTest", classes="7")
    assert text.splitlines() == [
        "**PublicTest, 7 classes (recall per class, %; overall accuracy, %)**", "",
        "| model | Angry | Disgust | Fear | Happy | Sad | Surprise | Neutral | Overall |",
        "|---|---|---|---|---|---|---|---|---|",
        "| a | 100.0 | 0.0 | 0.0 | 50.0 | 0.0 | 0.0 | 100.0 | **75.00** |",
        "| b | 0.0 | 0.0 | 0.0 | 100.0 | 0.0 | 0.0 | 0.0 | **50.00** |",
        "| ensemble: average | 0.0 | 0.0 | 0.0 | 100.0 | 0.0 | 0.0 | 0.0 | **50.00** |",
        "| **ensemble (chosen: average)** | 100.0 | 0.0 | 0.0 | 50.0 | 0.0 | 0.0 | 100.0 | **75.00** |"]
    assert markdown_tables(metrics()).count("classes (recall per class") == 4
    six_only = metrics(members={"a": {"PublicTest": {"6": A["6"]}}}, rules={}, ensemble={})
    assert markdown_tables(six_only, classes="7") == ""  # the command line then says which protocol there is

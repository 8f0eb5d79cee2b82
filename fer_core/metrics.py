"""Accuracy, per-class recall and confusion matrices, and the report's tables built from them."""
from __future__ import annotations

import numpy as np

from . import tta
from .labels import labels_for, to_6_labels, to_6_probs

SCORED_SPLITS = ("PublicTest", "PrivateTest")  # every model is scored on these, never on Training
PROTOCOLS = ("7", "6")                         # metrics' keys: FER2013's 7 classes, the report's 6


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


def report_tables(metrics: dict, split: str | None = None, classes: str | None = None) -> list[dict]:
    """The report's tables from metrics.json's numbers (fer_core.evaluate): one per split and protocol
    that has any, {split, classes, labels, tta, n, rows}. Rows: each member ('member' when in the
    chosen ensemble, else 'left_out'), each rule over the chosen members ('rule'), the chosen ensemble
    ('ensemble'); each {name, kind, recall: % per label, accuracy: %, n, best_recall, best}. Scores that are not
    there are left out, so a damaged file shows what it still has."""
    chosen = metrics.get("chosen") or {}
    in_ensemble = set(chosen.get("members") or [])
    models = [(n, "member" if n in in_ensemble else "left_out", s) for n, s in (metrics.get("members") or {}).items()]
    models += [(f"ensemble: {rule}", "rule", s) for rule, s in (metrics.get("rules") or {}).items()]
    models.append((f"ensemble (chosen: {chosen.get('rule', '?')})", "ensemble", metrics.get("ensemble")))
    views = tta.of(metrics if "tta" in metrics else chosen)  # metrics.json from before its own label
    tables = []
    for sp in [split] if split else SCORED_SPLITS:
        for c in [classes] if classes else PROTOCOLS:
            labels = labels_for(int(c))
            rows = []
            for name, kind, per_split in models:
                s = ((per_split or {}).get(sp) or {}).get(c)
                if isinstance(s, dict) and "recall" in s:
                    rows.append({"name": name, "kind": kind, "accuracy": 100 * float(s.get("accuracy", 0.0)),
                                 "recall": [100 * float(s["recall"].get(label, 0.0)) for label in labels],
                                 "n": s.get("n")})
            if rows:
                _mark_best(rows)
                tables.append({"split": sp, "classes": int(c), "labels": list(labels), "tta": views, "rows": rows,
                               "n": next((r["n"] for r in rows if r["n"]), None)})
    return tables


def _mark_best(rows: list[dict]) -> None:
    """Per column, the rows holding the best number as it is shown (recall to 0.1, accuracy to 0.01),
    so numbers that look equal are marked alike: ``best_recall`` per class, ``best`` overall."""
    def shown(v, digits):
        return float(f"{v:.{digits}f}")

    top = [max(shown(r["recall"][j], 1) for r in rows) for j in range(len(rows[0]["recall"]))]
    top_acc = max(shown(r["accuracy"], 2) for r in rows)
    for r in rows:
        r["best_recall"] = [shown(v, 1) == t for v, t in zip(r["recall"], top)]
        r["best"] = shown(r["accuracy"], 2) == top_acc


def markdown_tables(metrics: dict, split: str | None = None, classes: str | None = None) -> str:
    """``report_tables`` in Markdown (report.md, the command line), the chosen ensemble's row in bold."""
    parts = []
    for t in report_tables(metrics, split, classes):
        lines = [f"**{t['split']}, {t['classes']} classes (recall per class, %; overall accuracy, %)**", "",
                 "| model | " + " | ".join(label.capitalize() for label in t["labels"]) + " | Overall |",
                 "|" + "---|" * (len(t["labels"]) + 2)]
        for r in t["rows"]:
            name = f"**{r['name']}**" if r["kind"] == "ensemble" else r["name"]
            lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in r["recall"]) + f" | **{r['accuracy']:.2f}** |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)

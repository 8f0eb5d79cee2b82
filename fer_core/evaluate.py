"""Every table, recomputed from the weights in a models folder (never from stored numbers)."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from . import store, tta
from .data import FerData
from .ensemble import RULES, combine, rule_weights
from .labels import to_6_labels
from .metrics import both_protocols, markdown_table
from .predict import Predictor

EVAL_SPLITS = ("PublicTest", "PrivateTest")


def member_probabilities(pred: Predictor, data: FerData, splits=EVAL_SPLITS) -> dict[str, np.ndarray]:
    """Members' probabilities (M, N, C) per split, with the predictor's TTA setting."""
    return {s: pred.member_probs(data[s].x).transpose(1, 0, 2) for s in splits if s in data.splits}


def evaluate(models_dir, data: FerData, all_members: bool = True, runtime: str | None = "tensorflow",
             precision: str = "float32", tta_mode: str | None = None) -> dict:
    """Scores of each member, of the chosen ensemble, and of every combination rule over the chosen
    members (rule weights from PublicTest), on PublicTest and PrivateTest, 7- and 6-class protocols.
    The chosen members run in ``runtime`` at ``precision`` with views ``tta_mode`` (None: the
    ensemble's), so that what a server runs can be scored exactly (fer_core/runtime.py); members
    outside the ensemble run in TensorFlow."""
    models_dir = store.resolve_models_dir(models_dir)
    chosen = Predictor(models_dir, tta=tta_mode, runtime=runtime, precision=precision)
    probs = member_probabilities(chosen, data)
    y = {s: data[s].y for s in probs}
    out = {"members": {}, "ensemble": {}, "rules": {}, "chosen": {
        "members": chosen.member_names, "rule": chosen.spec.get("rule"),
        "weights": chosen.weights.round(6).tolist(), "tta": chosen.tta,
        "runtime": chosen.runtime, "precision": chosen.precision}}
    # Members outside the chosen ensemble are scored too, so the tables show what was left out.
    names = list(chosen.member_names)
    extra = [n for n in store.list_members(models_dir) if n not in names] if all_members else []
    if extra:
        from .train import predict_probs
        others = []
        for n in extra:
            m, side = store.load_member(models_dir / n)
            if side["labels"] == chosen.labels:
                others.append((n, m))
        for n, m in others:
            for s in probs:
                probs[s] = np.concatenate([probs[s], predict_probs(m, data[s].x, tta=chosen.tta)[None]])
            names.append(n)
    for i, n in enumerate(names):
        out["members"][n] = {s: both_protocols(y[s], probs[s][i]) for s in probs}
    k = len(chosen.member_names)
    for s in probs:
        out["ensemble"][s] = both_protocols(y[s], combine(probs[s][:k], chosen.weights))
    if "PublicTest" in probs:
        # rule weights compare labels with predictions: both in the models' own protocol
        y_val = to_6_labels(y["PublicTest"]) if probs["PublicTest"].shape[-1] == 6 else y["PublicTest"]
        for rule in RULES:
            w = rule_weights(rule, probs["PublicTest"][:k], y_val)
            out["rules"][rule] = {s: both_protocols(y[s], combine(probs[s][:k], w)) for s in probs}
    out["generated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out["data"] = data.source
    out["member_info"] = {n: _info(models_dir / n) for n in names}
    return out


def _info(member_dir: Path) -> dict:
    side = store.read_json(member_dir / "member.json")
    return {"arch": side["arch"], "params": side.get("params"), "trained": side.get("trained"),
            "recipe": {k: side["train"].get(k) for k in ("optimizer", "lr", "schedule", "augment",
                                                        "label_smoothing", "epochs")}}


def tables(metrics: dict, split: str | None = None, classes: str | None = None) -> str:
    """Markdown: one table per (split, protocol), members then the ensemble rules."""
    parts = []
    splits = [split] if split else [s for s in EVAL_SPLITS if s in metrics["ensemble"]]
    for s in splits:
        protos = [classes] if classes else ["7", "6"]
        for c in protos:
            rows = {n: m[s][c] for n, m in metrics["members"].items() if s in m and c in m[s]}
            for rule, r in metrics.get("rules", {}).items():
                if s in r and c in r[s]:
                    rows[f"ensemble: {rule}"] = r[s][c]
            if s in metrics["ensemble"] and c in metrics["ensemble"][s]:
                rows[f"**ensemble (chosen: {metrics['chosen']['rule']})**"] = metrics["ensemble"][s][c]
            if rows:
                parts.append(markdown_table(rows, int(c), f"{s}, {c} classes (recall per class, %; overall accuracy, %)"))
    return "\n".join(parts)


def report_markdown(metrics: dict) -> str:
    ch = metrics["chosen"]
    lines = ["# FER2013 results", "",
             f"Generated {metrics['generated']} from the weights in this folder, data `{metrics['data']}`.",
             f"Recompute with `python -m fer_core evaluate --models <this folder> --data <fer2013.csv.gz>`.", "",
             f"Chosen ensemble (on PublicTest): rule **{ch['rule']}**, members {', '.join(ch['members'])}, "
             f"test-time views `{tta.resolve(ch['tta'])}` (fer_core/tta.py), run in "
             f"{ch.get('runtime', 'tensorflow')} {ch.get('precision', 'float32')} (fer_core/runtime.py).", "",
             "## Members", "",
             "| member | architecture | parameters | epochs | minutes | recipe |", "|---|---|---|---|---|---|"]
    for n, info in metrics["member_info"].items():
        t = info.get("trained") or {}
        r = info["recipe"]
        lines.append(f"| {n} | {info['arch']} | {info['params']:,} | {t.get('epochs')} | {t.get('minutes')} | "
                     f"{r['optimizer']} lr {r['lr']}, {r['schedule']}, aug {r['augment']}, ls {r['label_smoothing']} |")
    lines += ["", "## Tables", "", tables(metrics)]
    return "\n".join(lines) + "\n"


def confusion_png(cm, labels, path: Path, title: str) -> None:
    import io
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    store.atomic_write_bytes(path, buf.getvalue())


def write_metrics(models_dir, metrics: dict) -> None:
    """metrics.json, report.md and the ensemble's confusion matrix on PrivateTest."""
    models_dir = Path(models_dir)
    store.atomic_write_json(models_dir / "metrics.json", metrics)
    store.atomic_write_bytes(models_dir / "report.md", report_markdown(metrics).encode())
    ens = metrics["ensemble"].get("PrivateTest") or metrics["ensemble"].get("PublicTest")
    if ens:
        c = "7" if "7" in ens else "6"
        from .labels import labels_for
        confusion_png(ens[c]["confusion"], labels_for(int(c)), models_dir / "confusion.png",
                      f"ensemble, {'PrivateTest' if 'PrivateTest' in metrics['ensemble'] else 'PublicTest'}")

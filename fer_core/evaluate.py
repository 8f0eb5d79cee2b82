"""Scores from the weights in a models folder (never from stored numbers): the choice of the ensemble
on PublicTest, and every table of metrics.json and report.md."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from . import plots, store, tta
from .data import FerData, to_protocol
from .ensemble import RULES, choose, combine, rule_weights
from .labels import labels_for, to_6_labels
from .metrics import SCORED_SPLITS, both_protocols, markdown_tables
from .predict import Predictor, probabilities
from .runtime import REFERENCE


def choose_ensemble(models_dir, data: FerData, classes: int = 7, min_size: int = 6, max_size: int = 11,
                    log=None, max_gflop: float | None = None) -> dict:
    """Members, combination rule and test-time views chosen together on PublicTest, among the members
    of ``models_dir`` with the ``classes`` protocol's labels: the spec that ensemble.json stores and
    the app serves. ``max_gflop``: only ensembles that cost at most this per face (every member, every
    view; fer_core.cost) are candidates. ``log``, if given, gets one line per views mode scored."""
    from . import cost
    models_dir = Path(models_dir)
    labels = list(labels_for(classes))
    names = [n for n in store.list_members(models_dir) if store.read_sidecar(models_dir / n)["labels"] == labels]
    if not names:
        raise store.ModelsError(f"no trained members in {models_dir}")
    members = [store.load_member(models_dir / n) for n in names]
    # Members trained without views are scored without them; 'flip' comes first so that it wins a
    # tie: the zoomed view serves only where it is really better.
    trained_with_views = all(tta.of(side["train"]) is not tta.TTA.NONE for _, side in members)
    modes = (tta.TTA.FLIP, tta.TTA.ZOOM_FLIP) if trained_with_views else (tta.TTA.NONE,)
    val = to_protocol(data["PublicTest"], classes)
    best = None
    for mode in modes:
        probs = np.stack([probabilities(model, val.x, mode) for model, _ in members])
        costs = [cost.ensemble_gflop_per_face([model], tta.n_views(mode)) for model, _ in members]
        spec = dict(choose(probs, val.y, names, min_size=min_size, max_size=max_size, costs=costs,
                           budget=max_gflop), tta=mode)
        chosen = [members[names.index(n)][0] for n in spec["members"]]
        spec["gflop_per_face"] = round(cost.ensemble_gflop_per_face(chosen, tta.n_views(mode)), 3)
        if log is not None:
            log(f"test-time views {mode}: {spec['rule']} over {', '.join(spec['members'])}, "
                f"PublicTest {100 * spec['val_accuracy']:.2f}%, {spec['gflop_per_face']:.2f} GFLOP/face")
        if best is None or spec["val_accuracy"] > best["val_accuracy"]:
            best = spec
    return dict(best, labels=labels, chosen_on="PublicTest")


# Images per progress step: a multiple of the predictor's largest batch (64), so chunking changes
# no batch the members see, and small enough that a progress bar moves every second or two.
CHUNK = 512


def _chunked(fn, x: np.ndarray, tick=None) -> np.ndarray:
    """``fn`` over ``x`` in CHUNK-image pieces, concatenated; ``tick(n)`` after each piece."""
    parts = []
    for i in range(0, len(x), CHUNK):
        parts.append(fn(x[i:i + CHUNK]))
        if tick is not None:
            tick(len(parts[-1]))
    return np.concatenate(parts) if parts else fn(x)


def member_probabilities(pred: Predictor, data: FerData, splits=SCORED_SPLITS, progress=None) -> dict[str, np.ndarray]:
    """Members' probabilities (M, N, C) per split, with the predictor's TTA setting.
    ``progress(n)``, if given, is called after every chunk with the number of images it scored."""
    return {s: _chunked(pred.member_probs, data[s].x, progress).transpose(1, 0, 2)
            for s in splits if s in data.splits}


def evaluate(models_dir, data: FerData, progress=None, runtime: str = REFERENCE[0],
             precision: str = REFERENCE[1], tta_mode: str | None = None) -> dict:
    """Scores of each member (those left out of the ensemble too), of the chosen ensemble, and of every
    combination rule over the chosen members (rule weights from PublicTest), on PublicTest and
    PrivateTest, 7- and 6-class protocols, all with the test-time views ``tta_mode`` (None: the
    ensemble's). The chosen members run in ``runtime`` at ``precision``: by default the reference,
    TensorFlow float32 (``fer_core.runtime.REFERENCE``, what ``admit`` scores exports against), so
    that the report's numbers are the weights' own; a name (or ``auto``, the server's measured
    choice) scores what a server runs (fer_core/runtime.py). Members outside the ensemble run in
    TensorFlow.

    ``progress(done, total)``, if given, is called as images are scored (an image counts once per
    model that scores it: the chosen ensemble, then each member left out of it)."""
    models_dir = store.resolve_models_dir(models_dir)
    chosen = Predictor(models_dir, tta=tta_mode, runtime=runtime, precision=precision)
    # Members outside the chosen ensemble are scored too, so the tables show what was left out.
    names = list(chosen.member_names)
    others = []
    for n in (n for n in store.list_members(models_dir) if n not in names):
        m, side = store.load_member(models_dir / n)
        if side["labels"] == chosen.labels:
            others.append((n, m))
    n_images = sum(len(data[s]) for s in SCORED_SPLITS if s in data.splits)
    done = [0, n_images * (1 + len(others))]

    def step(n):
        done[0] += n
        progress(done[0], done[1])

    tick = step if progress is not None else None
    if tick is not None:
        tick(0)
    probs = member_probabilities(chosen, data, progress=tick)
    y = {s: data[s].y for s in probs}
    out = {"tta": chosen.tta,  # the views of every score below
           "members": {}, "ensemble": {}, "rules": {}, "chosen": {
        "members": chosen.member_names, "rule": chosen.spec.get("rule"),
        "weights": chosen.weights.round(6).tolist(), "tta": chosen.tta,
        "runtime": chosen.runtime, "precision": chosen.precision}}
    for n, m in others:
        for s in probs:
            p = _chunked(lambda x: probabilities(m, x, chosen.tta), data[s].x, tick)
            probs[s] = np.concatenate([probs[s], p[None]])
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
    side = store.read_sidecar(member_dir)
    return {"arch": side["arch"], "params": side.get("params"), "trained": side.get("trained"),
            "recipe": {k: side["train"].get(k) for k in ("optimizer", "lr", "schedule", "augment",
                                                        "label_smoothing", "epochs")}}


def report_markdown(metrics: dict) -> str:
    ch = metrics["chosen"]
    lines = ["# FER2013 results", "",
             f"Generated {metrics['generated']} from the weights in this folder, data `{metrics['data']}`.",
             f"Recompute with `python -m fer_core evaluate --models <this folder> --data <fer2013.csv.gz>`.", "",
             f"Chosen ensemble (on PublicTest): rule **{ch['rule']}**, members {', '.join(ch['members'])}, "
             f"test-time views `{tta.of(ch)}` (fer_core/tta.py), run in "
             f"{ch.get('runtime', 'tensorflow')} {ch.get('precision', 'float32')} (fer_core/runtime.py).", "",
             "## Members", "",
             "| member | architecture | parameters | epochs | minutes | recipe |", "|---|---|---|---|---|---|"]
    for n, info in metrics["member_info"].items():
        t = info.get("trained") or {}
        r = info["recipe"]
        lines.append(f"| {n} | {info['arch']} | {info['params']:,} | {t.get('epochs')} | {t.get('minutes')} | "
                     f"{r['optimizer']} lr {r['lr']}, {r['schedule']}, aug {r['augment']}, ls {r['label_smoothing']} |")
    lines += ["", "## Tables", "", markdown_tables(metrics)]
    return "\n".join(lines) + "\n"


def write_metrics(models_dir, metrics: dict) -> None:
    """metrics.json, report.md and the ensemble's confusion matrix on PrivateTest."""
    models_dir = Path(models_dir)
    store.atomic_write_json(models_dir / "metrics.json", metrics)
    store.atomic_write_bytes(models_dir / "report.md", report_markdown(metrics).encode())
    ens = metrics["ensemble"].get("PrivateTest") or metrics["ensemble"].get("PublicTest")
    if ens:
        c = "7" if "7" in ens else "6"
        plots.confusion_png(ens[c]["confusion"], labels_for(int(c)), models_dir / "confusion.png",
                            f"ensemble, {'PrivateTest' if 'PrivateTest' in metrics['ensemble'] else 'PublicTest'}")

"""The ensemble's choice on PublicTest (fer_core.evaluate.choose_ensemble), on the tiny models folder
and PublicTest faces made up here: what is chosen is what scores best, and what the app then serves
scores the same."""
import json
import shutil

import numpy as np
import pytest

from fer_core import store
from fer_core.data import FerData, Split
from fer_core.evaluate import choose_ensemble
from fer_core.labels import LABELS_7
from fer_core.predict import Predictor, probabilities


def faces(n: int, seed: int) -> np.ndarray:
    """Ramps of random brightness with random dropout: enough variety that the untrained tiny members
    do not answer every face alike."""
    rng = np.random.default_rng(seed)
    ramp = rng.random((n, 1, 1)) * np.linspace(0, 255, 48)[None, None, :]
    return (ramp * (rng.random((n, 48, 48)) < rng.random((n, 1, 1)))).astype(np.uint8)


def public_test(x, y) -> FerData:
    return FerData({"PublicTest": Split(x=x, y=np.asarray(y, np.int64))}, source="made up")


def test_the_views_that_score_better_are_chosen_with_members_and_rule(tiny_models):
    """PublicTest labelled as resnet_q answers under zoom-flip, on faces where flip answers
    otherwise: resnet_q alone with zoom-flip is the one perfect choice."""
    m, _ = store.load_member(tiny_models / "resnet_q")
    x = faces(600, seed=0)
    zf, fl = probabilities(m, x, "zoom-flip").argmax(1), probabilities(m, x, "flip").argmax(1)
    assert (zf != fl).any(), "the made-up faces must tell the two modes apart"
    lines = []
    spec = choose_ensemble(tiny_models, public_test(x, zf), min_size=1, max_size=2, log=lines.append)
    assert spec["members"] == ["resnet_q"] and spec["tta"] == "zoom-flip" and spec["val_accuracy"] == 1.0
    assert spec["labels"] == list(LABELS_7) and spec["chosen_on"] == "PublicTest"
    assert spec["rule"] == "average" and np.allclose(spec["weights"], 1.0)  # one member: rules alike, first wins
    assert [line.split(":")[0] for line in lines] == ["test-time views flip", "test-time views zoom-flip"]
    assert "PublicTest 100.00%" in lines[1] and "PublicTest 100.00%" not in lines[0]
    # its cost, views included; with a budget below it, the other member is all that is left
    from fer_core import cost
    g = {n: cost.model_gflop(store.load_member(tiny_models / n)[0]) for n in ("resnet_q", "vgg_q")}
    assert spec["gflop_per_face"] == round(2 * g["resnet_q"], 3)
    cheap = choose_ensemble(tiny_models, public_test(x, zf), min_size=1, max_size=2,
                            max_gflop=2 * min(g.values()) * 1.01)
    assert cheap["members"] == [min(g, key=g.get)]


def test_the_chosen_spec_is_the_best_and_serves_as_scored(tiny_models, tmp_path):
    """Random labels: the spec's accuracy is the best of every (views, rule, subset), and the
    Predictor loading it as ensemble.json scores exactly that on the same faces."""
    from itertools import combinations

    from fer_core.ensemble import RULES, combine, rule_weights
    x = faces(300, seed=1)
    y = np.random.default_rng(2).integers(0, 7, len(x))
    spec = choose_ensemble(tiny_models, public_test(x, y), min_size=1, max_size=2)
    names = store.list_members(tiny_models)
    best = 0.0
    for mode in ("flip", "zoom-flip"):
        p = np.stack([probabilities(store.load_member(tiny_models / n)[0], x, mode) for n in names])
        for rule in RULES:
            for k in (1, 2):
                for sub in combinations(range(len(names)), k):
                    w = rule_weights(rule, p[list(sub)], y)
                    best = max(best, float((combine(p[list(sub)], w).argmax(1) == y).mean()))
    assert spec["val_accuracy"] == pytest.approx(best)
    served = tmp_path / "m"
    shutil.copytree(tiny_models, served)
    (served / "ensemble.json").write_text(json.dumps(spec))
    pred = Predictor(served)
    assert (pred.member_names, pred.tta) == (spec["members"], spec["tta"])
    assert float((pred.predict_faces(x)[0].argmax(1) == y).mean()) == pytest.approx(spec["val_accuracy"])


def test_members_trained_without_views_are_chosen_without(tiny_models, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_models, d)
    side = json.loads((d / "vgg_q" / "member.json").read_text())
    side["train"]["tta"] = "none"
    (d / "vgg_q" / "member.json").write_text(json.dumps(side))
    lines = []
    spec = choose_ensemble(d, public_test(faces(20, seed=3), np.zeros(20)), min_size=1, log=lines.append)
    assert spec["tta"] == "none" and [line.split(":")[0] for line in lines] == ["test-time views none"]


def test_no_member_with_the_protocols_labels(tiny_models):
    with pytest.raises(store.ModelsError, match="no trained members in"):
        choose_ensemble(tiny_models, public_test(faces(4, seed=4), np.zeros(4)), classes=6)

import numpy as np
import pytest

from fer_core.ensemble import choose, combine, rule_weights, select_subset

# Two members, three classes, four validation images, worked out by hand.
Y = np.array([0, 1, 2, 2])
P = np.array([
    [[.7, .2, .1], [.6, .3, .1], [.1, .1, .8], [.2, .5, .3]],   # member A: right on 0, 2; recall (1, 0, .5), acc .5
    [[.3, .6, .1], [.2, .7, .1], [.1, .2, .7], [.1, .2, .7]],   # member B: right on 1, 2, 3; recall (0, 1, 1), acc .75
])


def test_average():
    np.testing.assert_allclose(rule_weights("average", P, Y), np.full((2, 3), .5))
    np.testing.assert_allclose(combine(P, rule_weights("average", P, Y))[0], [.5, .4, .1])


def test_accuracy_weighted():
    w = rule_weights("accuracy", P, Y)
    np.testing.assert_allclose(w, [[.4] * 3, [.6] * 3])  # .5 / 1.25, .75 / 1.25
    np.testing.assert_allclose(combine(P, w)[0], [.4 * .7 + .6 * .3, .4 * .2 + .6 * .6, .4 * .1 + .6 * .1])


def test_class_recall_weighted():
    w = rule_weights("class_recall", P, Y)
    # recalls A (1, 0, .5), B (0, 1, 1); normalised per class across members
    np.testing.assert_allclose(w, [[1, 0, 1 / 3], [0, 1, 2 / 3]])
    e = combine(P, w)
    raw = np.array([.7, .6, .1 / 3 + .2 / 3])  # image 0: class 0 from A, class 1 from B, class 2 mixed
    np.testing.assert_allclose(e[0], raw / raw.sum())
    assert (e.argmax(1) == Y).all()  # here the rule fixes both members' mistakes


def test_class_nobody_recalls_falls_back_to_equal_weights():
    p = np.array([[[.9, .1]], [[.8, .2]]])
    w = rule_weights("class_recall", p, np.array([1]))
    np.testing.assert_allclose(w[:, 1], [.5, .5])


def test_subset_selection_scores_every_subset_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * .6 + .4 / 3
    noise = rng.dirichlet(np.ones(3), size=(3, 200))
    probs = np.concatenate([good[None], noise])
    subset, acc = select_subset(probs, y, "average", 1, 4)
    assert subset == (0,) and acc == 1.0
    spec = choose(probs, y, ["good", "n1", "n2", "n3"], min_size=1, max_size=4)
    assert spec["members"] == ["good"] and np.asarray(spec["weights"]).shape == (1, 3)


def test_a_budget_leaves_out_the_subsets_that_cost_too_much():
    """Members A, B (above) and C, a copy of A; costs 1, 2, 1 GFLOP. By hand: A+B averaged gets all
    four images right (image 3: (.15, .35, .5)), B alone 3 of 4, A or A+C 2 of 4."""
    p = np.concatenate([P, P[:1]])
    costs = [1.0, 2.0, 1.0]
    assert select_subset(p, Y, "average", 1, 3) == ((0, 1), 1.0)
    assert select_subset(p, Y, "average", 1, 3, costs, budget=3.0) == ((0, 1), 1.0)   # A+B costs 3: fits
    assert select_subset(p, Y, "average", 1, 3, costs, budget=2.5) == ((1,), 0.75)    # A+B does not
    # min_size 6 is lowered to the most members that fit (A and C, 2 GFLOP), and only those subsets score
    assert select_subset(p, Y, "average", 6, 11, costs, budget=2.0) == ((0, 2), 0.5)
    spec = choose(p, Y, ["A", "B", "C"], min_size=1, max_size=3, costs=costs, budget=2.5)
    assert spec["members"] == ["B"]
    with pytest.raises(ValueError, match="budget of 0.5 GFLOP"):
        select_subset(p, Y, "average", 1, 3, costs, budget=0.5)
    with pytest.raises(ValueError, match="one value per member"):
        select_subset(p, Y, "average", 1, 3, costs[:2], budget=2.5)


@pytest.mark.parametrize("rule", ["median", ""])
def test_unknown_rule(rule):
    with pytest.raises(ValueError, match="rule must be one of"):
        rule_weights(rule, P, Y)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="do not fit"):
        combine(P, np.ones((3, 3)))


def test_accuracy_rule_when_no_member_is_ever_right():
    p = np.array([[[.9, .1]], [[.8, .2]]])
    np.testing.assert_allclose(rule_weights("accuracy", p, np.array([1])), np.full((2, 2), .5))
    subset, _ = select_subset([p[0], p[1]], np.array([1]), "accuracy", 1, 2)  # a list of arrays works too
    assert subset == (0,)

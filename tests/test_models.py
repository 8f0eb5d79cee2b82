import numpy as np
import pytest

from fer_core.config import MEMBERS, QUICK_MEMBERS, REPORT_MEMBERS, TrainConfig, member_spec
from fer_core.models import BUILDERS, build

# The report's table spans 4.8M (VGG0) to 21.3M (ResNet 3-4-6-3) parameters; our builders' choices
# where the report is silent are in their docstrings. Counts: ours, checked to stay near the report.
REPORT_PARAMS = {"vgg0": 4.8e6, "resnet4": 21.3e6}


@pytest.mark.parametrize("name", REPORT_MEMBERS)
def test_report_members_in_the_reports_parameter_range(name):
    spec = member_spec(name)
    m = build(spec.arch, **spec.kwargs)
    n = m.count_params()
    assert 4.5e6 <= n <= 22e6, (name, n)
    if name in REPORT_PARAMS:
        assert abs(n - REPORT_PARAMS[name]) / REPORT_PARAMS[name] < 0.02, (name, n)


@pytest.mark.parametrize("name", sorted(set(MEMBERS) - set(REPORT_MEMBERS)) + sorted(QUICK_MEMBERS))
@pytest.mark.parametrize("classes", [7, 6])
def test_every_member_maps_48px_grey_to_class_probabilities(name, classes):
    spec = member_spec(name)
    m = build(spec.arch, **dict(spec.kwargs, num_classes=classes))
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 1)).astype("float32")
    p = np.asarray(m.predict_on_batch(x))
    assert p.shape == (2, classes)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-4)


def test_layers_are_named_by_block():
    m = build("vgg", variant="v2", filters=(8, 8, 8, 8), dense=(8,))
    names = {l.name for l in m.layers}
    assert {"block1_conv1", "block1_bn1", "block4_conv2", "fc1", "predictions"} <= names
    r = build("resnet", depths=(1, 1), filters=(8, 16))
    assert {"block2_res1_conv1", "block2_res1_shortcut", "block2_res1_add"} <= {l.name for l in r.layers}


def test_vgg_variants_differ_as_the_report_says():
    v0 = build("vgg", variant="v0", filters=(8, 8, 8, 8), dense=(25, 25))
    v1 = build("vgg", variant="v1", filters=(8, 8, 8, 8), l2_first=0.01)
    v2 = build("vgg", variant="v2", filters=(8, 8, 8, 8))
    bn = lambda m: sum(l.__class__.__name__ == "BatchNormalization" for l in m.layers)
    assert bn(v0) == 0
    assert bn(v1) == 4 + 3 and bn(v2) == 8 + 3  # one per block vs one per conv, plus the dense head
    assert v1.get_layer("block1_conv1").kernel_regularizer is not None
    assert v1.get_layer("block1_conv2").kernel_regularizer is None


def test_inception_block_widths():
    m = build("inception", blocks=(1,), n0=64, stem=16)
    out = m.get_layer("block1_inc1_concat").output.shape[-1]
    assert out == 48 + 32 + 8 + 16 + 16  # 3/4 n + 1/2 n + 1/8 n + 1/4 n + 1/4 n at n = 64


@pytest.mark.parametrize("bad", [dict(arch="alexnet"), dict(arch="vgg", variant="v9"), dict(arch="resnet", depths=(1,), filters=(8, 16))])
def test_bad_builder_arguments_raise_value_error(bad):
    with pytest.raises(ValueError):
        build(**bad)


def test_registry_and_config_validation():
    # every family the member registries use has a builder, and every builder is used
    assert set(BUILDERS) == {spec.arch for spec in (*MEMBERS.values(), *QUICK_MEMBERS.values())}
    with pytest.raises(ValueError, match="unknown member 'vgg9'"):
        member_spec("vgg9")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    assert TrainConfig.from_dict({"epochs": 3, "unknown": 1}).epochs == 3


@pytest.mark.parametrize("arch,kwargs", [("vgg", dict(filters=(8, 8, 8, 8), dense=(8,), head="avg")),
                                         ("resnet", dict(depths=(1, 1), filters=(8, 16))),
                                         ("inception", dict(blocks=(1,), n0=16, stem=8, head="avg"))])
def test_crop_members_see_only_the_faces_centre_and_cost_less(arch, kwargs):
    from fer_core.cost import model_gflop
    whole, cropped = build(arch, **kwargs), build(arch, crop=4, **kwargs)
    assert whole.count_params() == cropped.count_params()  # same weights: one can start from the other
    cropped.set_weights(whole.get_weights())
    assert cropped.get_layer("crop").output.shape[1:3] == (40, 40)
    # the first convolution runs on 40 x 40 pixels instead of 48 x 48
    assert model_gflop(cropped) < 0.75 * model_gflop(whole)
    x = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 1)).astype("float32")
    y = x.copy()
    y[:, :4], y[:, -4:], y[:, :, :4], y[:, :, -4:] = 0, 255, 255, 0  # change only the 4 px border
    np.testing.assert_allclose(cropped.predict_on_batch(x), cropped.predict_on_batch(y), atol=1e-6)
    assert not np.allclose(whole.predict_on_batch(x), whole.predict_on_batch(y), atol=1e-6)


@pytest.mark.parametrize("crop", [-1, 12, 30, 4.5])
def test_bad_crops_are_refused_with_the_value(crop):
    with pytest.raises(ValueError, match=f"got {crop}"):
        build("vgg", filters=(8, 8, 8, 8), dense=(8,), head="avg", crop=crop)


_COUNTED = {**{n: (s.arch, s.kwargs) for n, s in {**MEMBERS, **QUICK_MEMBERS}.items()},
            "vgg v0 flatten crop": ("vgg", dict(variant="v0", filters=(8, 16), dense=(5,), crop=3, head="flatten")),
            "vgg v1 no dense": ("vgg", dict(variant="v1", filters=(8, 16, 4), dense=(), crop=2)),
            "inception flatten crop": ("inception", dict(blocks=(1, 2), n0=24, step=8, stem=8, crop=5, head="flatten",
                                                         num_classes=6)),
            "resnet three stages": ("resnet", dict(depths=(2, 1, 1), filters=(8, 8, 16), crop=1, num_classes=3))}


@pytest.mark.parametrize("name", sorted(_COUNTED))
def test_count_params_is_what_the_build_holds(name):
    """The count a stored member is sized by before it is built (fer_core.store.check_sidecar) is
    the built model's own, for every registered member and the layouts the builders offer."""
    from fer_core.models import count_params
    arch, kwargs = _COUNTED[name]
    assert count_params(arch, dict(kwargs)) == build(arch, **kwargs).count_params()


@pytest.mark.parametrize("kwargs, message", [
    ([1, 2], "kwargs: expected an object of vgg arguments, got list"),
    (dict(depth=3), "kwargs: unknown argument 'depth' for vgg"),
    (dict(filters=[8, -1]), r"kwargs.filters: expected a list of positive integers, got \[8, -1\]"),
    (dict(num_classes=7.0), "kwargs.num_classes: expected an integer >= 0, got 7.0"),
    (dict(l2=float("nan")), "kwargs.l2: expected a number >= 0, got nan"),
    (dict(head=1), "kwargs.head: expected a string, got 1"),
])
def test_arguments_are_checked_against_the_builders_signature(kwargs, message):
    from fer_core.models import arguments
    with pytest.raises(ValueError, match=message):
        arguments("vgg", kwargs)
    assert arguments("vgg", {"dense": [4]})["dense"] == [4] and arguments("vgg", {})["variant"] == "v2"

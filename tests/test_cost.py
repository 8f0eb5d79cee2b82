import pytest

from fer_core import cost


def _tiny(name="tiny"):
    import keras
    from keras import layers
    inp = keras.Input((48, 48, 1))
    x = layers.Conv2D(8, 3, padding="same")(inp)              # 48*48 positions x 3*3*1 x 8 = 165,888 MACs
    x = layers.Conv2D(4, 1, strides=2)(x)                     # 24*24 x 1*1*8 x 4 = 18,432 MACs
    x = layers.BatchNormalization()(x)                        # not counted
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(7)(x)                                  # 4 x 7 = 28 MACs
    return keras.Model(inp, out, name=name)


MACS = 165_888 + 18_432 + 28


def test_model_gflop_counts_conv_and_dense_multiply_adds():
    assert cost.model_gflop(_tiny()) == pytest.approx(2 * MACS / 1e9)


def test_nested_members_are_counted_and_views_multiply():
    import keras
    a, b = _tiny("a"), _tiny("b")
    inp = keras.Input((48, 48, 1))
    both = keras.Model(inp, keras.layers.Concatenate()([a(inp), b(inp)]))
    assert cost.model_gflop(both) == pytest.approx(2 * 2 * MACS / 1e9)
    assert cost.ensemble_gflop_per_face([a, b], views=2) == pytest.approx(2 * 2 * 2 * MACS / 1e9)
    with pytest.raises(ValueError, match="views must be >= 1, got 0"):
        cost.ensemble_gflop_per_face([a], views=0)


def test_shipped_member_cost_matches_its_architecture():
    """vgg_q (the tests' tiny VGG) counted layer by layer from its own shapes, not from a stored number."""
    from fer_core.config import member_spec
    from fer_core.models import build
    spec = member_spec("vgg_q")
    m = build(spec.arch, **dict(spec.kwargs, num_classes=7))
    expect = 0
    for l in m.layers:
        if type(l).__name__ == "Conv2D":
            h, w, c = l.output.shape[1:]
            expect += h * w * c * l.kernel_size[0] * l.kernel_size[1] * l.input.shape[-1]
        elif type(l).__name__ == "Dense":
            expect += l.input.shape[-1] * l.units
    assert expect > 0
    assert cost.model_gflop(m) == pytest.approx(2 * expect / 1e9)


def test_the_benchmarks_yardstick_matmul_gflops_and_capacity_index():
    from harness import yardstick
    g = yardstick.matmul_gflops(n=64, seconds=0.01)
    assert g > 0
    assert yardstick.capacity_index(40.5, 166.0) == pytest.approx(24.4, abs=0.05)
    with pytest.raises(ValueError, match="got n=8"):
        yardstick.matmul_gflops(n=8)
    with pytest.raises(ValueError, match="got 0"):
        yardstick.capacity_index(10, 0)

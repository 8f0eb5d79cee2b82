"""Test-time views (fer_core/tta.py): what each mode feeds the members."""
import cv2
import numpy as np
import pytest

from fer_core import tta


def faces(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def test_zoom_is_opencv_bilinear_resize_of_the_46px_centre():
    x = faces()
    want = np.stack([cv2.resize(f[1:47, 1:47].astype(np.float32), (48, 48), interpolation=cv2.INTER_LINEAR)
                     for f in x])
    got = tta.zoom(x)
    assert got.shape == (4, 48, 48) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_zoom_keeps_a_flat_face_flat_and_commutes_with_the_mirror():
    flat = np.full((1, 48, 48), 117, np.uint8)
    np.testing.assert_allclose(tta.zoom(flat), 117, atol=1e-4)
    x = faces(seed=1)
    np.testing.assert_allclose(tta.zoom(x[:, :, ::-1]), tta.zoom(x)[:, :, ::-1], atol=1e-4)


def test_views_per_mode():
    x = faces(seed=2)
    (one,) = tta.views(x, "none")
    np.testing.assert_array_equal(one, x.astype(np.float32))
    a, b = tta.views(x, "flip")
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, x[:, :, ::-1])
    za, zb = tta.views(x, "zoom-flip")
    np.testing.assert_allclose(za, tta.zoom(x))
    np.testing.assert_allclose(zb, tta.zoom(x)[:, :, ::-1])
    (z,) = tta.views(x, "zoom")
    np.testing.assert_allclose(z, tta.zoom(x))
    assert [tta.n_views(m) for m in tta.MODES] == [1, 2, 2, 1]


def test_first_view_is_the_mode_of_a_modes_first_view():
    x = np.random.default_rng(1).integers(0, 256, (2, 48, 48)).astype(np.uint8)
    assert [tta.first_view(m) for m in ("zoom-flip", "flip", "zoom", "none")] == ["zoom", "none", "zoom", "none"]
    for m in tta.MODES:
        np.testing.assert_array_equal(tta.views(x, tta.first_view(m))[0], tta.views(x, m)[0])
        assert tta.n_views(tta.first_view(m)) == 1
    with pytest.raises(ValueError, match="'half'"):
        tta.first_view("half")


def test_legacy_booleans_and_bad_modes():
    assert (tta.resolve(True), tta.resolve(False), tta.resolve("zoom-flip")) == ("flip", "none", "zoom-flip")
    for bad in ("on", "Flip", None, 1):
        with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
            tta.resolve(bad)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        tta.views(np.zeros((3, 32, 32)), "flip")


def test_web_config_reads_modes_and_the_old_switch():
    from webapp.config import WebConfig
    assert WebConfig.from_env({"FER_TTA": "zoom-flip"}).tta == "zoom-flip"
    assert WebConfig.from_env({"FER_TTA": "1"}).tta == "flip"
    assert WebConfig.from_env({"FER_TTA": "0"}).tta == "none"
    assert WebConfig().tta is None
    with pytest.raises(ValueError, match="'sideways'"):
        WebConfig.from_env({"FER_TTA": "sideways"})


def test_one_mode_type_whatever_the_spelling():
    """Every reader turns what a file, a config or the environment says into the one TTA type, which
    writes back as the mode's name."""
    import json

    from fer_core.config import TrainConfig
    from webapp.config import WebConfig
    assert [tta.resolve(m) for m in ("none", "flip", "zoom-flip")] == [tta.TTA.NONE, tta.TTA.FLIP, tta.TTA.ZOOM_FLIP]
    assert json.dumps({"tta": tta.TTA.ZOOM_FLIP}) == '{"tta": "zoom-flip"}'
    assert TrainConfig(tta=True).tta is tta.TTA.FLIP and TrainConfig(tta="none").tta is tta.TTA.NONE
    assert TrainConfig().to_dict()["tta"] == "flip"
    with pytest.raises(ValueError, match="'sideways'"):
        TrainConfig(tta="sideways")
    assert WebConfig.from_env({"FER_TTA": "zoom-flip"}).tta is tta.TTA.ZOOM_FLIP
    assert WebConfig(tta=False).tta is tta.TTA.NONE
    # a stored dict without the key is from before the modes: the mirror was averaged
    assert tta.of({}) is tta.TTA.FLIP and tta.of({"tta": False}) is tta.TTA.NONE
    assert tta.of({"tta": "zoom-flip"}) is tta.TTA.ZOOM_FLIP

"""Grad-CAM (fer_core/explain.py): on hand-built networks whose answer is known, and on the shipped
members with a real face."""
from __future__ import annotations

import numpy as np
import pytest

from fer_core import explain
from fer_core.models.ends import CROP_LAYER
from fer_core.store import DEFAULT_MODELS


def _bright_dark_model(pool: bool = False, crop: int = 0):
    """Two 1x1-conv detectors, 'bright' (channel 0: relu(x/255 - 0.5)) and 'dark' (channel 1:
    relu(0.5 - x/255)); class 0's logit is the mean of channel 0, class 1's of channel 1. Optionally
    a 4x4 max pooling first, so that the feature map (12x12) is coarser than the face, or a centre
    crop as crop members have (fer_core/models/ends.py)."""
    import keras
    from keras import layers
    inp = keras.Input((48, 48, 1), name="image")
    x = layers.MaxPooling2D(4, name="pool")(inp) if pool else inp
    x = layers.Rescaling(1 / 255, name="rescale")(x)
    x = layers.Cropping2D(crop, name=CROP_LAYER)(x) if crop else x
    conv = layers.Conv2D(2, 1, name="detect")
    x = layers.Activation("relu", name="detect_relu")(conv(x))
    head = layers.Dense(2, activation="softmax", name="predictions")
    out = head(layers.GlobalAveragePooling2D(name="avg")(x))
    model = keras.Model(inp, out)
    conv.set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2), np.array([-0.5, 0.5], np.float32)])
    head.set_weights([np.eye(2, dtype=np.float32) * 20, np.zeros(2, np.float32)])
    return model


def _face():
    """Mid grey, a bright square top left, a dark square bottom right."""
    f = np.full((1, 48, 48), 128, np.uint8)
    f[0, 4:16, 4:16] = 255
    f[0, 32:44, 32:44] = 0
    return f


def _mass(m, rows, cols):
    return float(m[rows, cols].sum() / m.sum())


@pytest.mark.parametrize("pool", [False, True], ids=["full-res", "pooled-12x12"])
@pytest.mark.parametrize("tta", ["none", "flip", "zoom-flip"])
def test_each_class_map_lies_on_its_own_evidence(pool, tta):
    model = _bright_dark_model(pool)
    assert explain.feature_layer(model) == "detect_relu"  # the rectified map after the last conv
    bright = explain.grad_cam(model, _face(), 0, tta=tta)[0]
    dark = explain.grad_cam(model, _face(), 1, tta=tta)[0]
    for m in (bright, dark):
        assert m.shape == (48, 48) and m.dtype == np.float32 and m.min() >= 0 and m.max() == pytest.approx(1)
    # most of each map's mass on its own square (bilinear upsampling and the zoom view blur the edges)
    assert _mass(bright, slice(0, 20), slice(0, 20)) > 0.8, bright[::6, ::6]
    assert _mass(dark, slice(28, 48), slice(28, 48)) > 0.8, dark[::6, ::6]
    assert _mass(bright, slice(28, 48), slice(28, 48)) < 0.05 and _mass(dark, slice(0, 20), slice(0, 20)) < 0.05


def test_a_crop_members_map_lies_where_its_centre_is_in_the_face():
    m = explain.grad_cam(_bright_dark_model(crop=4), _face(), 0)[0]
    assert m.shape == (48, 48)
    assert not m[:4].any() and not m[:, :4].any() and not m[-4:].any()  # the border it never saw
    rows, cols = np.nonzero(m > 0.5)
    # the bright square is rows and columns 4..15 of the face (centre 9.5); a map stretched over the
    # whole face would put it at 0..14
    assert abs(rows.mean() - 9.5) < 1.5 and abs(cols.mean() - 9.5) < 1.5, (rows.mean(), cols.mean())


def test_views_are_mapped_back_to_the_crop():
    """The per-pixel model is mirror-equivariant: the flip view's map, mirrored back, is the plain
    map, so 'flip' equals 'none'; a bug leaving the mirror in would put half the mass bottom left."""
    model = _bright_dark_model()
    face = _face()
    np.testing.assert_allclose(explain.grad_cam(model, face, 0, tta="flip"), explain.grad_cam(model, face, 0), atol=1e-5)
    zf = explain.unview(np.ones((1, 48, 48), np.float32), "zoom-flip", 1)
    assert zf[0, 0].max() == 0 and zf[0, -1].max() == 0 and zf[0, 1:-1, 1:-1].min() == pytest.approx(1)


def test_batches_and_class_per_face():
    model = _bright_dark_model()
    faces = np.concatenate([_face(), _face()[:, ::-1, ::-1]])  # the second rotated by 180 degrees
    maps = explain.grad_cam(model, faces, [0, 0])
    assert maps.shape == (2, 48, 48)
    np.testing.assert_allclose(maps[1], maps[0][::-1, ::-1], atol=1e-5)
    both = explain.grad_cam(model, np.concatenate([_face(), _face()]), np.array([0, 1]))
    np.testing.assert_allclose(both[0], explain.grad_cam(model, _face(), 0)[0], atol=1e-6)
    np.testing.assert_allclose(both[1], explain.grad_cam(model, _face(), 1)[0], atol=1e-6)


def test_ensemble_map_weighs_members_for_the_explained_class():
    a, b = np.zeros((1, 48, 48), np.float32), np.zeros((1, 48, 48), np.float32)
    a[0, :24] = 1.0
    b[0, 24:] = 0.5
    w = np.array([[0.75, 0.1], [0.25, 0.9]])
    m0 = explain.ensemble_map(np.stack([a, b]), w, 0)[0]
    assert m0[0, 0] == pytest.approx(1) and m0[40, 0] == pytest.approx(0.25 * 0.5 / 0.75)
    m1 = explain.ensemble_map(np.stack([a, b]), w, 1)[0]
    assert m1[40, 0] == pytest.approx(1) and m1[0, 0] == pytest.approx(0.1 / 0.45)
    assert explain.ensemble_map(np.zeros((2, 1, 48, 48)), w, 0).max() == 0  # no evidence: zeros, not NaN


@pytest.mark.parametrize("faces,cls,match", [
    (np.zeros((48, 48), np.uint8), 0, "shape"),
    (np.zeros((1, 32, 32), np.uint8), 0, "shape"),
    (np.zeros((1, 48, 48), np.uint8), 2, r"class_index.*got 2"),
    (np.zeros((1, 48, 48), np.uint8), -1, "class_index"),
    (np.zeros((2, 48, 48), np.uint8), [0], "class_index"),
    (np.zeros((1, 48, 48), np.uint8), 0.5, "class_index"),
])
def test_bad_arguments_are_clear_errors(faces, cls, match):
    with pytest.raises(ValueError, match=match):
        explain.grad_cam(_bright_dark_model(), faces, cls)


def test_a_model_without_a_convolution_is_refused():
    import keras
    inp = keras.Input((48, 48, 1))
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inp)))
    with pytest.raises(ValueError, match="no Conv2D"):
        explain.feature_layer(model)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        explain.Probe(_bright_dark_model(), "nope")


def test_shipped_members_look_at_a_real_face(astronaut_bgr):
    """The shipped ensemble on the astronaut's crop (the detector's): every map 48x48 in [0, 1],
    not uniform, and the ensemble's is the members' maps weighted as the shipped rule weighs them for
    the class explained (class_recall: each member's PublicTest recall of 'happy')."""
    import cv2
    from fer_core.faces import FaceDetector, find_faces
    if not (DEFAULT_MODELS / "ensemble.json").is_file():
        pytest.skip("no shipped models")
    ex = explain.Explainer(DEFAULT_MODELS)
    _, crops = find_faces(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY), FaceDetector())
    ens, members = ex.explain(crops[:1], ex.labels.index("happy"))
    assert ens.shape == (1, 48, 48) and members.shape == (len(ex.member_names), 1, 48, 48)
    for m in (ens[0], *members[:, 0]):
        assert m.min() >= 0 and m.max() == pytest.approx(1) and m.std() > 0.1, m[::8, ::8]
    happy = ex.labels.index("happy")
    w = np.asarray(ex.weights, dtype=np.float64)[:, happy]
    np.testing.assert_allclose(ens, explain.normalise(np.tensordot(w / w.sum(), members, axes=1)), atol=1e-5)
    # the evidence lies on the face's inside, not on the crop's border
    assert ens[0, 8:40, 8:40].sum() > 0.7 * ens[0].sum()

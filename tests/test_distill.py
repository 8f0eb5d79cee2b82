"""Knowledge distillation (fer_core/distill.py): the targets' formula, the teacher's cache, and a
distilled member that records its teacher."""
import numpy as np
import pytest

from conftest import build_models_dir
from fer_core import distill
from fer_core.config import TrainConfig, member_spec
from fer_core.data import load_fer2013
from fer_core.predict import Predictor
from fer_core.train import train_member
from test_train import synthetic_csv


def test_mix_is_the_weighted_sum_of_labels_and_teacher():
    y = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    q = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], np.float32)
    t = distill.mix(y, q, 0.7)
    # by hand: 0.3 * [1, 0, 0] + 0.7 * [0.5, 0.3, 0.2] = [0.65, 0.21, 0.14]
    np.testing.assert_allclose(t[0], [0.65, 0.21, 0.14], atol=1e-6)
    np.testing.assert_allclose(t[1], [0.07, 0.07, 0.86], atol=1e-6)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(distill.mix(y, q, 0.0), y)
    with pytest.raises(ValueError, match="1.5"):
        distill.mix(y, q, 1.5)
    with pytest.raises(ValueError, match="shape"):
        distill.mix(y, q[:, :2], 0.5)


def test_a_teacher_and_its_weight_go_together():
    with pytest.raises(ValueError, match="distill=0.5, teacher=None"):
        TrainConfig(distill=0.5)
    with pytest.raises(ValueError, match="teacher='shipped'"):
        TrainConfig(teacher="shipped")
    with pytest.raises(ValueError, match="1.2"):
        TrainConfig(teacher="shipped", distill=1.2)
    # the registry's distilled members learn from the shipped ensemble, starting from its members
    for name in ("vgg_s_kd", "vgg_s2_kd", "resnet_s_kd"):
        cfg = member_spec(name).train_config()
        assert cfg.teacher == distill.SHIPPED and 0 < cfg.distill < 1 and cfg.init_from


def test_teacher_probabilities_are_the_served_ensembles_and_cached(tmp_path, monkeypatch):
    teacher = build_models_dir(tmp_path / "teacher", seed=3)
    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    pred = Predictor(teacher, runtime="tensorflow", precision="float32")
    q, info = distill.teacher_probabilities(str(teacher), faces, 7, tmp_path / "cache")
    np.testing.assert_allclose(q, pred.predict_faces(faces)[0], atol=1e-5)
    assert info["members"] == ["vgg_q", "resnet_q"] and info["views"] == str(pred.tta)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # the second time comes from the cache: no model is run
    monkeypatch.setattr(Predictor, "predict_faces", lambda *a: pytest.fail("teacher recomputed"))
    q2, info2 = distill.teacher_probabilities(str(teacher), faces, 7, tmp_path / "cache")
    np.testing.assert_array_equal(q, q2)
    assert info2 == info
    # 6-class students get the 7-class teacher merged (Disgust into Angry)
    q6, _ = distill.teacher_probabilities(str(teacher), faces, 6, tmp_path / "cache")
    np.testing.assert_allclose(q6[:, 0], q[:, 0] + q[:, 1], atol=1e-6)
    # other faces, or changed weights, are another digest: never a stale cache
    assert distill.fingerprint(teacher, faces[:9], pred.tta) != info["sha256"]
    w = teacher / "vgg_q" / "weights.npz"
    w.write_bytes(w.read_bytes() + b"\0")
    assert distill.fingerprint(teacher, faces, pred.tta) != info["sha256"]


@pytest.mark.slow
def test_a_distilled_member_learns_the_mixed_targets_and_names_its_teacher(tmp_path):
    data = load_fer2013(synthetic_csv(tmp_path / "synth.csv", per_class=(12, 4, 4)))
    teacher = build_models_dir(tmp_path / "teacher", seed=4)
    spec = member_spec("vgg_q")
    seen = {}
    import keras
    real_fit = keras.Model.fit

    def spy(self, x, y, **kw):
        seen["y"] = np.asarray(y)
        return real_fit(self, x, y, **kw)

    cfg = TrainConfig(**dict(spec.train, epochs=1, teacher=str(teacher), distill=0.25))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(keras.Model, "fit", spy)
        side = train_member("vgg_q_kd", spec, cfg, data, tmp_path / "run", verbose=0)
    q = Predictor(teacher, runtime="tensorflow", precision="float32").predict_faces(data["Training"].x)[0]
    expected = 0.75 * np.eye(7)[data["Training"].y] + 0.25 * q
    np.testing.assert_allclose(seen["y"], expected, atol=1e-5)
    assert side["teacher"]["members"] == ["vgg_q", "resnet_q"] and side["train"]["distill"] == 0.25
    assert len(side["teacher"]["sha256"]) == 64

"""Every runtime gives TensorFlow's answers (fer_core/runtime.py); a runtime whose package is not
installed is skipped. The tiny test members are exported into a temporary cache."""
import numpy as np
import pytest

from fer_core import runtime
from fer_core.predict import Predictor

# How far an exported runtime may move a member's probability from TensorFlow's, per precision.
ATOL = {"float32": 1e-4, "float16": 1e-2, "int8": 0.06}
PAIRS = [(r, p) for r in ("litert", "onnx") for p in ("float32", "float16", "int8")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One export cache for the module: each export of the tiny members is built once (~15 s each)."""
    path = tmp_path_factory.mktemp("runtime") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runtime.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def faces(astronaut_bgr):
    from fer_core.faces import FaceDetector, find_faces
    _, crops = find_faces(astronaut_bgr, FaceDetector())
    rng = np.random.default_rng(0)
    # her face, and the same face darker, brighter, shifted and noisy: inputs with some spread
    more = [np.clip(crops[0] * a + b, 0, 255) for a, b in ((0.6, 0), (1.0, 50), (0.8, 20))]
    more.append(np.roll(crops[0], 3, axis=1))
    more.append(np.clip(crops[0] + rng.normal(0, 20, crops[0].shape), 0, 255))
    return np.concatenate([crops, np.stack(more)]).astype(np.uint8)


def _calibration(views, n=runtime.CALIBRATION_FACES, data_path=None):
    """Stand-in for FER2013 Training faces (the tests run without the dataset)."""
    from fer_core import tta
    rng = np.random.default_rng(1)
    return np.concatenate(tta.views(rng.integers(0, 256, (64, 48, 48)).astype(np.uint8), views))[..., None]


@pytest.mark.parametrize("name,precision", PAIRS)
def test_every_runtime_agrees_with_tensorflow(tiny_models, faces, cache, monkeypatch, name, precision):
    pytest.importorskip(runtime._RUN[name])
    pytest.importorskip(runtime._EXPORT[name])
    monkeypatch.setattr(runtime, "calibration_inputs", _calibration)
    tf_pred = Predictor(tiny_models, tta="zoom-flip")
    pred = Predictor(tiny_models, tta="zoom-flip", runtime=name, precision=precision)
    assert (pred.runtime, pred.precision) == (name, precision)
    assert pred.runner.path.parent == cache and pred.runner.path.is_file()
    want, got = tf_pred.member_probs(faces), pred.member_probs(faces)
    assert got.shape == want.shape == (len(faces), 2, 7)
    np.testing.assert_allclose(got, want, atol=ATOL[precision])
    if precision == "float32":
        np.testing.assert_array_equal(pred.predict_faces(faces)[0].argmax(-1), tf_pred.predict_faces(faces)[0].argmax(-1))


def test_exports_are_cached_and_keyed_by_the_weights(tiny_models, cache, monkeypatch, tmp_path):
    pytest.importorskip("ai_edge_litert")
    first = Predictor(tiny_models, runtime="litert")
    path = first.runner.path

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export", no_export)
    assert Predictor(tiny_models, runtime="litert").runner.path == path  # loaded from the cache
    import shutil
    other = tmp_path / "other"
    shutil.copytree(tiny_models, other)
    from conftest import build_models_dir
    build_models_dir(other, seed=1)  # same members, other weights: another file
    with pytest.raises(AssertionError, match="exported again"):
        Predictor(other, runtime="litert")


def test_exported_runtimes_run_batches_unpadded(tiny_models, cache):
    pytest.importorskip("ai_edge_litert")
    pred = Predictor(tiny_models, tta="flip", runtime="litert")
    seen = []
    real = pred.runner.__call__

    class Spy:
        pads = False

        def __call__(self, x):
            seen.append(len(x))
            return real(x)

    pred.runner = Spy()
    pred.member_probs(np.zeros((3, 48, 48), np.uint8))
    assert seen == [6]  # 3 faces x 2 views, not padded to 8 as TensorFlow's compiled shapes are


def test_litert_runs_crop_members_as_tensorflow_does(faces, cache, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from conftest import build_models_dir
    models = build_models_dir(tmp_path / "crop", names=("vgg_q",), crop=4)
    tf_pred = Predictor(models, tta="zoom-flip")
    pred = Predictor(models, tta="zoom-flip", runtime="litert")
    assert pred.runtime == "litert"
    np.testing.assert_allclose(pred.member_probs(faces), tf_pred.member_probs(faces), atol=ATOL["float32"])


def test_bad_names_are_refused_with_the_value():
    with pytest.raises(ValueError, match="got 'tflite'"):
        runtime.check("tflite")
    with pytest.raises(ValueError, match="got 'int4'"):
        runtime.check("litert", "int4")
    with pytest.raises(ValueError, match="got precision 'float16'"):
        runtime.check("tensorflow", "float16")
    assert runtime.resolve("tensorflow") == "tensorflow"
    assert runtime.resolve("auto") == ("litert" if runtime.installed("litert") else "tensorflow")


def test_evaluate_scores_through_the_runtime(tiny_models, cache, tmp_path, capsys):
    """`python -m fer_core evaluate --runtime litert` scores the ensemble as the server runs it."""
    pytest.importorskip("ai_edge_litert")
    import json
    from fer_core.cli import main as cli
    from test_train import synthetic_csv
    data = synthetic_csv(tmp_path / "synth.csv", per_class=(1, 4, 4))
    assert cli(["evaluate", "--data", str(data), "--models", str(tiny_models), "--json", "--runtime", "litert"]) == 0
    lite = json.loads(capsys.readouterr().out)
    assert cli(["evaluate", "--data", str(data), "--models", str(tiny_models), "--json"]) == 0
    tf = json.loads(capsys.readouterr().out)
    assert (lite["chosen"]["runtime"], lite["chosen"]["precision"]) == ("litert", "float32")
    assert tf["chosen"]["runtime"] == "tensorflow"
    for s in ("PublicTest", "PrivateTest"):
        assert lite["ensemble"][s]["7"]["accuracy"] == pytest.approx(tf["ensemble"][s]["7"]["accuracy"])


def test_auto_falls_back_to_tensorflow_when_the_export_fails(tiny_models, monkeypatch, tmp_path, caplog):
    pytest.importorskip("ai_edge_litert")
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "empty"))

    def broken(*a, **k):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(runtime, "export", broken)
    p = Predictor(tiny_models, runtime="auto")
    assert p.runtime == "tensorflow" and "converter crashed" in caplog.text
    with pytest.raises(RuntimeError, match="converter crashed"):
        Predictor(tiny_models, runtime="litert")  # asked for by name: no silent fallback

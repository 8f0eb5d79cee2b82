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
    first = Predictor(tiny_models, runtime="litert", precision="float32")
    path = first.runner.path

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export", no_export)
    assert Predictor(tiny_models, runtime="litert", precision="float32").runner.path == path  # loaded from the cache
    import shutil
    other = tmp_path / "other"
    shutil.copytree(tiny_models, other)
    from conftest import build_models_dir
    build_models_dir(other, seed=1)  # same members, other weights: another file
    with pytest.raises(AssertionError, match="exported again"):
        Predictor(other, runtime="litert", precision="float32")


def test_exported_runtimes_run_batches_unpadded(tiny_models, cache):
    pytest.importorskip("ai_edge_litert")
    pred = Predictor(tiny_models, tta="flip", runtime="litert", precision="float32")
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
    pred = Predictor(models, tta="zoom-flip", runtime="litert", precision="float32")
    assert pred.runtime == "litert"
    np.testing.assert_allclose(pred.member_probs(faces), tf_pred.member_probs(faces), atol=ATOL["float32"])


def test_bad_names_are_refused_with_the_value():
    with pytest.raises(ValueError, match="got 'tflite'"):
        runtime.check("tflite")
    with pytest.raises(ValueError, match="got 'int4'"):
        runtime.check("litert", "int4")
    with pytest.raises(ValueError, match="got precision 'float16'"):
        runtime.check("tensorflow", "float16")
    with pytest.raises(ValueError, match="got 'auto'"):
        runtime.check("auto")  # a name: auto is choose's, not load's
    runtime.check_choice("auto", "auto")
    runtime.check_choice("litert", "auto")
    with pytest.raises(ValueError, match="got precision 'int8'"):
        runtime.check_choice("tensorflow", "int8")
    with pytest.raises(ValueError, match="got 'fast'"):
        runtime.check_choice("auto", "fast")


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
    p = Predictor(tiny_models, runtime="auto", precision="float32")  # every runtime's float32, named
    assert p.runtime == "tensorflow" and "converter crashed" in caplog.text
    with pytest.raises(RuntimeError, match="converter crashed"):
        Predictor(tiny_models, runtime="litert", precision="float32")  # asked for by name: no silent fallback


def test_one_default_runs_the_ensemble_and_evaluation_scores_the_reference(tiny_models):
    """The server, `predict`, the API and Predictor default to the measured choice, named once in
    fer_core/runtime.py; without a runtimes.json it is TensorFlow float32, the one pair admitted
    without a record. Evaluation defaults to the reference that exports are scored against."""
    import inspect
    from fer_core import cli
    from fer_core.evaluate import evaluate
    from webapp.config import WebConfig
    assert (WebConfig().runtime, WebConfig().precision) == (runtime.DEFAULT_RUNTIME, runtime.DEFAULT_PRECISION) \
        == (runtime.AUTO, runtime.AUTO)
    args = inspect.signature(Predictor).parameters
    assert (args["runtime"].default, args["precision"].default) == (runtime.DEFAULT_RUNTIME, runtime.DEFAULT_PRECISION)
    args = inspect.signature(evaluate).parameters
    assert (args["runtime"].default, args["precision"].default) == runtime.REFERENCE == ("tensorflow", "float32")
    assert not (tiny_models / runtime.ADMISSIONS).exists()
    p = Predictor(tiny_models)
    assert (p.runtime, p.precision, p.choice.how) == ("tensorflow", "float32", "measured")
    assert all("no score in runtimes.json" in why for n, why in p.choice.reasons.items()
               if runtime.installed(n.split("/")[0]))
    with pytest.raises(SystemExit):
        cli.main(["predict", "--runtime", "fast", "x.jpg"])


# -- admission and the measured choice -------------------------------------------------------------------

def _record(**over):
    rec = {"weights": "w1", "views": "flip", "split": "PublicTest", "images": 3589, "of": 3589, "complete": True,
           "reference": {"accuracy": 0.700},
           "runtimes": {"litert/int8": {"accuracy": 0.698, "export": "k1"}}}
    rec.update(over)
    return rec


def test_refusal_names_what_does_not_match():
    ok = _record()
    assert runtime.refusal(ok, "w1", "flip", "litert", "int8", "k1") is None  # -0.2 pp: within 0.3
    assert runtime.refusal({}, "w1", "flip", "tensorflow", "float32", None) is None  # the reference
    assert "no score" in runtime.refusal({}, "w1", "flip", "litert", "int8", "k1")
    assert "other weights" in runtime.refusal(ok, "w2", "flip", "litert", "int8", "k1")
    assert "views 'flip'" in runtime.refusal(ok, "w1", "zoom-flip", "litert", "int8", "k1")
    assert "not scored" in runtime.refusal(ok, "w1", "flip", "onnx", "int8", "k1")
    assert "another export" in runtime.refusal(ok, "w1", "flip", "litert", "int8", "k2")
    assert "64 of 3589" in runtime.refusal(_record(images=64, complete=False), "w1", "flip", "litert", "int8", "k1")
    low = _record(runtimes={"litert/int8": {"accuracy": 0.696, "export": "k1"}})
    assert "-0.40 pp" in runtime.refusal(low, "w1", "flip", "litert", "int8", "k1")


def test_admit_records_scores_and_a_weights_change_withdraws_them(tiny_models, cache, monkeypatch, tmp_path, capsys):
    """`python -m fer_core admit` writes runtimes.json; the choice admits its exports for these weights only."""
    pytest.importorskip("ai_edge_litert")
    import json
    import shutil
    from conftest import build_models_dir
    from fer_core.cli import main as cli
    from test_train import synthetic_csv
    monkeypatch.setattr(runtime, "calibration_inputs", _calibration)
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    data = synthetic_csv(tmp_path / "synth.csv", per_class=(1, 3, 1))
    assert cli(["admit", "--data", str(data), "--models", str(models), "--runtimes", "litert/float32,litert/int8"]) == 0
    out = capsys.readouterr().out
    assert "litert/float32: " in out and "wrote " in out
    rec = json.loads((models / runtime.ADMISSIONS).read_text())
    assert rec["complete"] and rec["images"] == rec["of"] == 21 and rec["split"] == "PublicTest"
    f32 = rec["runtimes"]["litert/float32"]
    assert f32["admitted"] and f32["delta_pp"] == 0 and f32["agreement"] == 1.0
    pred = Predictor(models, runtime="auto", precision="auto")
    assert "litert/float32" in pred.choice.timings_ms and "tensorflow/float32" in pred.choice.timings_ms
    assert "not admitted" not in pred.choice.reasons.get("litert/float32", "")

    build_models_dir(models, seed=1)  # new weights: the record no longer speaks for them
    pred = Predictor(models, runtime="auto", precision="auto")
    assert (pred.runtime, pred.precision, pred.choice.how) == ("tensorflow", "float32", "measured")
    assert "other weights" in pred.choice.reasons["litert/float32"]
    assert "other weights" in pred.choice.reasons["litert/int8"]

    assert cli(["admit", "--data", str(data), "--models", str(models), "--runtimes", "litert/float32", "--limit", "5"]) == 0
    assert "the server admits nothing" in capsys.readouterr().out
    pred = Predictor(models, runtime="auto", precision="auto")
    assert "5 of 21" in pred.choice.reasons["litert/float32"]


class _Fake:
    pads = False

    def __init__(self, r, p):
        self.runtime, self.precision = r, p

    def __call__(self, x):
        return np.zeros((len(x), 2, 7), np.float32)


class _Model:
    output_shape = (None, 2, 7)


def _choose(monkeypatch, times, broken=(), **kw):
    """runtime.choose over fake runners whose medians are ``times`` (pair name -> ms), every export
    installed and admitted; the pairs in ``broken`` fail to load."""
    def fake_load(model, r, p, *a):
        if f"{r}/{p}" in broken:
            raise RuntimeError(f"{r} {p} converter crashed")
        return _Fake(r, p) if r != "tensorflow" else runtime.KerasRunner(model)

    monkeypatch.setattr(runtime, "installed", lambda r: True)
    monkeypatch.setattr(runtime, "read_admissions", lambda md: {})
    monkeypatch.setattr(runtime, "refusal", lambda *a: None)
    monkeypatch.setattr(runtime, "_key_of", lambda *a: "k")
    monkeypatch.setattr(runtime, "_load", fake_load)
    monkeypatch.setattr(runtime, "_median_ms", lambda runners, b, n: {k: times[k] for k in runners})
    return runtime.choose(_Model(), models_dir="m", members=["a"], **kw)


ALL_TIMES = {"tensorflow/float32": 30.0, "litert/float32": 20.0, "litert/float16": 21.0, "litert/int8": 15.0,
             "onnx/float32": 25.0, "onnx/float16": 40.0, "onnx/int8": 19.5}


def test_the_fastest_admitted_serves_and_a_lower_precision_must_beat_float32_clearly(monkeypatch):
    runner, c = _choose(monkeypatch, ALL_TIMES)
    assert (c.runtime, c.precision, c.how) == ("litert", "int8", "measured") and runner.precision == "int8"
    assert set(c.timings_ms) == set(ALL_TIMES) and "slower than litert/int8" in c.reasons["onnx/int8"]
    assert "litert int8 (measured; per 16 views: litert/int8 15.0 ms" in c.describe()
    # int8 only 2.5 % faster than the best float32: float32 serves
    _, c = _choose(monkeypatch, dict(ALL_TIMES, **{"litert/int8": 19.5, "onnx/int8": 25.0}))
    assert (c.runtime, c.precision) == ("litert", "float32")
    assert "not 5 % faster than litert/float32" in c.reasons["litert/int8"]
    # nothing beats TensorFlow float32: it serves
    _, c = _choose(monkeypatch, {k: (10.0 if k == "tensorflow/float32" else 50.0) for k in ALL_TIMES})
    assert (c.runtime, c.precision) == ("tensorflow", "float32")


def test_a_runtime_that_fails_to_load_gives_way_to_the_next(monkeypatch, caplog):
    runner, c = _choose(monkeypatch, ALL_TIMES, broken=("litert/int8", "onnx/int8"))
    assert (c.runtime, c.precision) == ("litert", "float32")
    assert "converter crashed" in c.reasons["litert/int8"] and "converter crashed" in caplog.text
    # a named pair that fails: TensorFlow float32, said so, never a crash
    runner, c = _choose(monkeypatch, ALL_TIMES, broken=("onnx/int8",), runtime="onnx", precision="int8")
    assert (c.runtime, c.precision, c.how) == ("tensorflow", "float32", "fallback")
    assert isinstance(runner, runtime.KerasRunner) and "onnx/int8" in c.reasons


def test_what_the_operator_names_needs_no_record(monkeypatch):
    monkeypatch.setattr(runtime, "installed", lambda r: True)
    no = lambda r, p: "no score"  # noqa: E731 - nothing admitted
    pairs, reasons, named = runtime.candidates("auto", "auto", no)
    assert pairs == [("tensorflow", "float32")] and "not admitted: no score" == reasons["litert/int8"]
    pairs, _, named = runtime.candidates("litert", "auto", no)
    assert pairs == [("litert", "float32")] == sorted(named)
    pairs, _, _ = runtime.candidates("auto", "int8", no)
    assert pairs == [("litert", "int8"), ("onnx", "int8")]
    _, c = _choose(monkeypatch, ALL_TIMES, runtime="onnx", precision="int8")
    assert (c.runtime, c.precision, c.how) == ("onnx", "int8", "named") and c.timings_ms == {"onnx/int8": 19.5}
    with pytest.raises(ValueError, match="got precision 'int8'"):
        runtime.candidates("tensorflow", "int8")
    with pytest.raises(ValueError, match="got 'tflite'"):
        runtime.candidates("tflite")


def test_predict_makes_the_servers_choice(tiny_models, tmp_path, astronaut_jpeg, monkeypatch, capsys):
    """`python -m fer_core predict` (videos included) runs what runtime.choose picks, as the server
    does; FER_RUNTIME/FER_PRECISION name a choice for it as for the server."""
    from fer_core import cli
    seen = []
    real = runtime.choose

    def spy(model, r, p, **kw):
        seen.append((r, p))
        return real(model, r, p, **kw)

    monkeypatch.setattr(runtime, "choose", spy)
    img = tmp_path / "face.jpg"
    img.write_bytes(astronaut_jpeg)
    assert cli.main(["predict", str(img), "--models", str(tiny_models), "--format", "jsonl"]) == 0
    assert seen == [("auto", "auto")]
    monkeypatch.setenv("FER_RUNTIME", "tensorflow")
    monkeypatch.setenv("FER_PRECISION", "float32")
    assert cli.main(["predict", str(img), "--models", str(tiny_models), "--format", "jsonl"]) == 0
    assert seen == [("auto", "auto")]  # named: loaded as asked, nothing to choose
    capsys.readouterr()

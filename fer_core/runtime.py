"""The runtime the ensemble runs in: TensorFlow, or an exported copy in LiteRT or ONNX Runtime.

TensorFlow stays the training path and the fallback. For serving, the ensemble model that
``Predictor`` builds (every member's softmax, stacked) can be exported once and run by

* ``litert``: ``ai-edge-litert``'s interpreter with its XNNPACK CPU kernels. Exported with
  ``model.export(format="tf_saved_model")`` and ``tf.lite.TFLiteConverter.from_saved_model``
  (converting from a concrete function instead dropped the weights: 14 % accuracy);
* ``onnx``: ONNX Runtime's CPU provider, exported with ``model.export(format="onnx")`` (tf2onnx).

in ``float32``, ``float16`` (weights stored in half precision) or ``int8`` (weights and activations
quantised, calibrated on Training faces seen through the serving views). Exported files are cached
by the sha256 of everything they are made from, in ``$FER_RUNTIME_CACHE`` (default ``.cache/runtime``
in the checkout, git-ignored): a server builds them at its first start, later starts load them.
The shipped weights stay the members' ``.npz`` files. Accuracy and speed of each are measured by
``bench/bench_runtime.py`` (docs/benchmarks.md).

Which one serves (``choose``): the fastest, timed where the server starts, among those whose
accuracy is known to hold. An export is *admitted* by its record in ``runtimes.json`` beside the
weights, written by ``python -m fer_core admit`` (``admit``): scored on the whole of PublicTest, for
these very weights and views and this very export (its cache key), with accuracy
``a_export >= a_float32 - TOLERANCE_PP``. TensorFlow float32 is the reference and always admitted.
A runtime or precision named by the operator (FER_RUNTIME, FER_PRECISION) needs no record.

The names below are the only spelling of the runtimes, the precisions and their defaults: the
server's settings (webapp/config.py), the CLI and ``Predictor`` import them. Whatever runs the
ensemble (the server, ``predict``, ``fer_core.api``, ``Predictor``) defaults to ``AUTO``, the
measured choice; without a ``runtimes.json`` that choice is TensorFlow float32, the only candidate
admitted without a record. Whatever scores the weights (``evaluate``, ``admit``) defaults to
``REFERENCE``, so that a score never depends on which runtime was fastest that day.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RUNTIMES = ("tensorflow", "litert", "onnx")
PRECISIONS = ("float32", "float16", "int8")
AUTO = "auto"  # a runtime or precision left to ``choose``: the fastest admitted one, timed here
DEFAULT_RUNTIME = DEFAULT_PRECISION = AUTO  # what runs the ensemble unless a caller names one
REFERENCE = ("tensorflow", "float32")  # what exports are scored against (``admit``); evaluation's default
RUNTIME_ENV, PRECISION_ENV = "FER_RUNTIME", "FER_PRECISION"  # the server's and predict's settings
CACHE_ENV = "FER_RUNTIME_CACHE"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "runtime"
CALIBRATION_FACES = 512  # Training faces (each through every view) that int8 quantisation is calibrated on
# What each runtime needs installed: to run an exported file, and to export one.
_RUN = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}
_EXPORT = {"litert": "tensorflow", "onnx": "tf2onnx"}


def installed(runtime: str) -> bool:
    """True when ``runtime``'s package can be imported (TensorFlow: always, it is a requirement)."""
    check(runtime)
    return runtime == "tensorflow" or importlib.util.find_spec(_RUN[runtime]) is not None


def check(runtime: str, precision: str = "float32") -> None:
    """``runtime`` and ``precision`` are names (not ``AUTO``) that go together; ValueError otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES} (or {AUTO!r}), got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} (or {AUTO!r}), got {precision!r}")
    if runtime == "tensorflow" and precision != "float32":
        raise ValueError(f"the tensorflow runtime runs float32 only, got precision {precision!r}")


def check_choice(runtime: str, precision: str) -> None:
    """``check`` for a setting as given, where either may also be ``AUTO`` (left to ``choose``)."""
    if runtime != AUTO:
        check(runtime)
    if precision != AUTO:
        check("litert", precision)  # an exported runtime runs every precision
    if runtime == "tensorflow" and precision not in (AUTO, "float32"):
        raise ValueError(f"the tensorflow runtime runs float32 only, got precision {precision!r}")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_key(models_dir: Path, members: list[str], runtime: str, precision: str, views: str) -> str:
    """sha256 of what an exported file is made of: each member's weights and sidecar, the runtime,
    the precision, the library versions, and (int8 only, whose calibration sees them) the views."""
    import keras
    parts = {"members": [], "runtime": runtime, "precision": precision, "keras": keras.__version__,
             "format": 1}
    for n in members:
        side = json.loads((Path(models_dir) / n / "member.json").read_text())
        parts["members"].append([n, side["arch"], side["kwargs"], _sha256(Path(models_dir) / n / "weights.npz")])
    import tensorflow as tf
    parts["tensorflow"] = tf.__version__
    if runtime == "onnx":
        import onnxruntime
        parts["onnxruntime"] = onnxruntime.__version__
    if precision == "int8":
        parts["views"], parts["calibration"] = views, CALIBRATION_FACES
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def calibration_inputs(views: str, n: int = CALIBRATION_FACES, data_path=None) -> np.ndarray:
    """float32 (n x views, 48, 48, 1): the first Training faces of FER2013 (a fixed, seeded sample
    of them), through the serving views, as the network sees them."""
    from . import tta
    from .data import load_fer2013
    train = load_fer2013(data_path, limit=4 * n)["Training"].x
    pick = np.random.default_rng(0).choice(len(train), size=min(n, len(train)), replace=False)
    return np.concatenate(tta.views(train[np.sort(pick)], views))[..., None]


# -- exporting -----------------------------------------------------------------------------------------

def _export_litert(model, precision: str, calib) -> bytes:
    import tensorflow as tf
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if precision == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        return conv.convert()


class _Reader:
    """onnxruntime.quantization's calibration data reader over an array of inputs."""

    def __init__(self, name, x, batch=16):
        self._it = iter({name: x[i:i + batch]} for i in range(0, len(x), batch))

    def get_next(self):
        return next(self._it, None)


def _export_onnx(model, precision: str, calib) -> bytes:
    import onnx
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "f32.onnx"
        model.predict_on_batch(np.zeros((1, 48, 48, 1), np.float32))  # Keras exports only a model it has called
        model.export(str(f32), format="onnx", verbose=False)
        if precision == "float32":
            return f32.read_bytes()
        if precision == "float16":
            from onnxruntime.transformers.float16 import convert_float_to_float16
            m = convert_float_to_float16(onnx.load(str(f32)), keep_io_types=True)
            return m.SerializeToString()
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)
        name = onnx.load(str(pre)).graph.input[0].name
        quantize_static(str(pre), str(q), _Reader(name, calib), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True)  # 7-bit weights: u8 x s8 products saturate on AVX2 CPUs without VNNI
        return q.read_bytes()


def export(model, runtime: str, precision: str, path: Path, calib=None) -> Path:
    """Export the Keras ``model`` to ``path`` (written to a temporary name, then renamed)."""
    check(runtime, precision)
    if runtime == "tensorflow":
        raise ValueError("the tensorflow runtime runs the Keras model itself: nothing to export")
    if importlib.util.find_spec(_EXPORT[runtime]) is None:
        raise ValueError(f"exporting for {runtime!r} needs the Python package {_EXPORT[runtime]!r}")
    if precision == "int8" and calib is None:
        raise ValueError("int8 needs calibration inputs (calibration_inputs())")
    data = (_export_litert if runtime == "litert" else _export_onnx)(model, precision, calib)
    from .store import atomic_write_bytes
    atomic_write_bytes(path, data)
    return path


# -- running ---------------------------------------------------------------------------------------

class Runner:
    """Calls the ensemble model: float32 views (B, 48, 48, 1) -> members' probabilities (B, M, C).
    ``pads``: whether batches should be padded to a few fixed sizes (TensorFlow compiles one function
    per shape; the exported runtimes resize for free, so padding would only add work)."""

    pads = False
    output_shape: tuple = ()  # the Keras model's (None, M, C), set by ``load``

    def __init__(self, runtime: str, precision: str, path: Path | None = None):
        self.runtime, self.precision, self.path = runtime, precision, path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KerasRunner(Runner):
    pads = True

    def __init__(self, model):
        super().__init__("tensorflow", "float32")
        self.model = model

    def __call__(self, x):
        return np.asarray(self.model.predict_on_batch(x))


class Timed(Runner):
    """``runner`` with the seconds spent in its calls added up in ``busy_s`` (the worker reports the
    model's share of each batch from it)."""

    def __init__(self, runner: Runner):
        super().__init__(runner.runtime, runner.precision, runner.path)
        self.runner, self.pads, self.output_shape = runner, runner.pads, runner.output_shape
        self.busy_s = 0.0

    def __call__(self, x):
        t = time.perf_counter()
        try:
            return self.runner(x)
        finally:
            self.busy_s += time.perf_counter() - t


def litert_interpreter(threads: int, **model):
    """A LiteRT interpreter for ``model_path=`` or ``model_content=``, its tensors allocated, without
    the "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." that its first allocation prints."""
    from ai_edge_litert.interpreter import Interpreter

    from .quiet import filtered_stderr
    with filtered_stderr():
        it = Interpreter(num_threads=threads, **model)
        it.allocate_tensors()
    return it


class LiteRTRunner(Runner):
    def __init__(self, path: Path, precision: str, threads: int):
        super().__init__("litert", precision, path)
        self._it = litert_interpreter(threads, model_path=str(path))
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._shape = None

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self._shape:  # re-planning for a new batch size costs well under a millisecond
            self._it.resize_tensor_input(self._in, list(x.shape))
            self._it.allocate_tensors()
            self._shape = x.shape
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out).copy()


class OnnxRunner(Runner):
    def __init__(self, path: Path, precision: str, threads: int):
        super().__init__("onnx", precision, path)
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._in = self._s.get_inputs()[0].name

    def __call__(self, x):
        return self._s.run(None, {self._in: np.ascontiguousarray(x, dtype=np.float32)})[0]


def load(model, runtime: str, precision: str, *, models_dir=None, members=(), views: str = "none",
         threads: int = 0, calibration_data=None) -> Runner:
    """A Runner for the Keras ensemble ``model`` in the named ``runtime`` at ``precision`` (``AUTO`` is
    ``choose``'s): the cached export when there is one, else exported now (int8: calibrated on
    Training faces from ``calibration_data`` or $FER2013_PATH). A failure is raised, not replaced."""
    check(runtime, precision)
    if not installed(runtime):
        raise ValueError(f"runtime {runtime!r} needs the Python package {_RUN[runtime]!r} (see requirements.txt)")
    runner = _load(model, runtime, precision, models_dir, members, views, threads, calibration_data)
    runner.output_shape = tuple(model.output_shape)
    return runner


def _load(model, runtime, precision, models_dir, members, views, threads, calibration_data) -> Runner:
    if runtime == "tensorflow":
        return KerasRunner(model)
    if models_dir is None or not members:
        raise ValueError("an exported runtime needs the models folder and the member names (for its cache key)")
    threads = threads if threads > 0 else (os.cpu_count() or 1)
    key = export_key(Path(models_dir), list(members), runtime, precision, views)
    path = cache_dir() / f"{key}.{'tflite' if runtime == 'litert' else 'onnx'}"
    if not path.is_file():
        calib = calibration_inputs(views, data_path=calibration_data) if precision == "int8" else None
        export(model, runtime, precision, path, calib)
    return (LiteRTRunner if runtime == "litert" else OnnxRunner)(path, precision, threads)


# -- admission: which exports may serve --------------------------------------------------------------

ADMISSIONS = "runtimes.json"  # beside ensemble.json: each export's score against TensorFlow float32
TOLERANCE_PP = 0.3            # an export serves only within this many points of float32's PublicTest accuracy
EXPORTS = tuple((r, p) for r in RUNTIMES[1:] for p in PRECISIONS)
# A lower precision serves only when it beats the fastest float32 by more than this fraction: timings
# on a shared CPU move by a few percent, and its answers differ slightly from float32's.
MARGIN = 0.05
TIMING_BATCH = 16  # rows per timed call: a busy class's batch, 16 frames of one followed face, a view each
TIMING_REPS = 5    # timed calls per runtime, taken in turns so that each sees the same load


def pair_name(runtime: str, precision: str) -> str:
    return f"{runtime}/{precision}"


def weights_key(models_dir, members) -> str:
    """sha256 of what the ensemble's answers are made of: ensemble.json (members, rule, weights,
    views) and each member's member.json and weights.npz. A record of another key is stale."""
    md = Path(models_dir)
    h = hashlib.sha256((md / "ensemble.json").read_bytes())
    for n in members:
        h.update(n.encode())
        h.update((md / n / "member.json").read_bytes())
        h.update(_sha256(md / n / "weights.npz").encode())
    return h.hexdigest()[:32]


def read_admissions(models_dir) -> dict:
    """The models folder's ``runtimes.json``, or {} when there is none or it cannot be read (logged:
    without it only TensorFlow float32 and what the operator names serve)."""
    path = Path(models_dir) / ADMISSIONS
    if not path.is_file():
        return {}
    try:
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or not isinstance(rec.get("runtimes"), dict):
            raise ValueError("no 'runtimes' table")
        return rec
    except (ValueError, OSError) as e:
        logging.getLogger(__name__).warning("%s ignored (%s: %s)", path, type(e).__name__, e)
        return {}


def refusal(record: dict, weights: str, views: str, runtime: str, precision: str, key: str | None) -> str | None:
    """Why ``record`` (``read_admissions``) does not admit ``runtime``/``precision`` for an ensemble
    of ``weights`` (``weights_key``) under ``views`` whose export has cache key ``key``; None: admitted.
    Admitted: scored on the whole split, on these weights, views and export, and
    ``100 * (a - a_float32) >= -TOLERANCE_PP`` (a: the ensemble's accuracy through the export)."""
    if (runtime, precision) == REFERENCE:
        return None
    fix = "run python -m fer_core admit"
    if not record:
        return f"no score in {ADMISSIONS} ({fix})"
    if record.get("weights") != weights:
        return f"{ADMISSIONS} was scored on other weights (key {str(record.get('weights'))[:12]}, these are {weights[:12]}: {fix})"
    if str(record.get("views")) != str(views):
        return f"{ADMISSIONS} was scored with views {record.get('views')!r}, these are {str(views)!r} ({fix})"
    entry = record["runtimes"].get(pair_name(runtime, precision))
    if not isinstance(entry, dict):
        return f"not scored in {ADMISSIONS} ({fix})"
    if entry.get("export") != key:
        return f"{ADMISSIONS} scored another export of it (library versions or calibration changed: {fix})"
    if not record.get("complete"):
        return (f"scored on {record.get('images')} of {record.get('of')} {record.get('split')} faces only "
                f"(--limit): {fix} on the whole split")
    try:
        delta = 100 * (float(entry["accuracy"]) - float(record["reference"]["accuracy"]))
    except (KeyError, TypeError, ValueError):
        return f"{ADMISSIONS} has no accuracy for it ({fix})"
    if delta < -TOLERANCE_PP:
        return f"{delta:+.2f} pp below float32 on {record.get('split')} (bound -{TOLERANCE_PP} pp)"
    return None


def _key_of(models_dir, members, runtime, precision, views) -> str | None:
    return None if runtime == "tensorflow" else export_key(Path(models_dir), list(members), runtime, precision, views)


def admit(models_dir=None, data=None, split: str = "PublicTest", pairs=EXPORTS, limit: int | None = None,
          threads: int = 0, log=None) -> dict:
    """Score each exported runtime/precision of ``pairs`` on ``split`` (its first ``limit`` faces; None:
    all) against TensorFlow float32, and write the record to ``runtimes.json`` in the models folder
    (atomically; entries of other pairs scored on the same weights, views and faces are kept).

    Per pair: the ensemble's accuracy (its own rule and views, its own protocol's labels), the share
    of faces given float32's label (agreement), ``delta_pp = 100 * (a - a_float32)``, the export's
    cache key, and whether ``refusal`` admits it. A pair that cannot export or load is recorded
    under ``failed`` with its reason. ``log(line)`` gets one line per pair."""
    from . import store
    from .data import load_fer2013
    from .ensemble import combine
    from .labels import to_6_labels
    from .predict import Predictor, probabilities

    log = log or (lambda line: None)
    md = store.resolve_models_dir(models_dir)
    pairs = [tuple(p) for p in pairs]
    for r, p in pairs:
        check(r, p)
        if r == "tensorflow":
            raise ValueError(f"pairs are exported runtimes (tensorflow/float32 is the reference), got {r}/{p}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    fer = load_fer2013(data)
    if split not in fer.splits:
        raise ValueError(f"split {split!r} not in {fer.source} (it has {', '.join(fer.splits)})")
    x, y = fer[split].x, fer[split].y
    total = len(x)
    x, y = x[:limit], y[:limit]
    ref = Predictor(md, runtime=REFERENCE[0], precision=REFERENCE[1])
    if len(ref.labels) == 6:
        y = to_6_labels(y)

    def labels_of(runner):
        mp = np.concatenate([probabilities(runner, x[i:i + 512], ref.tta) for i in range(0, len(x), 512)])
        return combine(mp.transpose(1, 0, 2), ref.weights).argmax(-1)

    t = time.perf_counter()
    want = labels_of(ref.runner)
    acc_ref = float((want == y).mean())
    log(f"tensorflow/float32: {100 * acc_ref:.2f} % on {len(x)} {split} faces ({time.perf_counter() - t:.0f} s)")
    weights = weights_key(md, ref.member_names)
    old = read_admissions(md)
    same = old and all(old.get(k) == v for k, v in
                       (("weights", weights), ("views", str(ref.tta)), ("split", split), ("images", len(x))))
    rec = {"weights": weights, "views": str(ref.tta), "members": ref.member_names, "split": split,
           "images": len(x), "of": total, "complete": len(x) == total, "tolerance_pp": TOLERANCE_PP,
           "reference": {"runtime": REFERENCE[0], "precision": REFERENCE[1], "accuracy": round(acc_ref, 6)},
           "runtimes": dict(old["runtimes"]) if same else {}, "failed": dict(old.get("failed") or {}) if same else {},
           "data": fer.source}
    for r, p in pairs:
        name = pair_name(r, p)
        rec["runtimes"].pop(name, None)
        rec["failed"].pop(name, None)
        if not installed(r):
            rec["failed"][name] = f"the Python package {_RUN[r]!r} is not installed"
            log(f"{name}: {rec['failed'][name]}")
            continue
        t = time.perf_counter()
        try:
            runner = load(ref.model, r, p, models_dir=md, members=ref.member_names, views=ref.tta, threads=threads,
                          calibration_data=data)
            got = labels_of(runner)
        except Exception as e:  # noqa: BLE001 - one runtime failing must not stop the others' scores
            rec["failed"][name] = f"{type(e).__name__}: {e}"[:300]
            log(f"{name}: failed ({rec['failed'][name]})")
            continue
        acc = float((got == y).mean())
        rec["runtimes"][name] = {"accuracy": round(acc, 6), "delta_pp": round(100 * (acc - acc_ref), 3),
                                 "agreement": round(float((got == want).mean()), 6),
                                 "export": _key_of(md, ref.member_names, r, p, ref.tta)}
        entry = _judge(rec, name)
        log(f"{name}: {100 * entry['accuracy']:.2f} % ({entry['delta_pp']:+.2f} pp), same label as float32 "
            f"{100 * entry['agreement']:.2f} % ({time.perf_counter() - t:.0f} s): "
            f"{'admitted' if entry['admitted'] else 'not admitted, ' + entry['reason']}")
    for name in rec["runtimes"]:  # entries kept from an earlier run are judged again
        _judge(rec, name)
    from .store import atomic_write_json
    atomic_write_json(md / ADMISSIONS, rec)
    return rec


def _judge(rec: dict, name: str) -> dict:
    """Set ``admitted`` and ``reason`` of ``rec``'s entry ``name`` by ``refusal``; the entry."""
    entry = rec["runtimes"][name]
    r, p = name.split("/")
    why = refusal(rec, rec["weights"], rec["views"], r, p, entry["export"])
    entry["admitted"], entry["reason"] = why is None, why
    return entry


# -- the measured choice -------------------------------------------------------------------------------

@dataclass
class Choice:
    """What serves and why: ``how`` is ``measured`` (the fastest admitted), ``named`` (FER_RUNTIME and
    FER_PRECISION both given) or ``fallback`` (every candidate failed: TensorFlow float32).
    ``timings_ms``: median ms per call of ``batch`` rows, per candidate that loaded; ``reasons``: why
    each other pair does not serve (not installed, not admitted, failed, slower)."""
    runtime: str
    precision: str
    how: str
    timings_ms: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    batch: int = TIMING_BATCH

    def as_dict(self) -> dict:
        return {"runtime": self.runtime, "precision": self.precision, "how": self.how, "batch": self.batch,
                "timings_ms": dict(self.timings_ms), "reasons": dict(self.reasons)}

    def describe(self) -> str:
        """One line for the server log: the choice, each candidate's time, each refusal."""
        times = ", ".join(f"{n} {t:.1f} ms" for n, t in sorted(self.timings_ms.items(), key=lambda kv: kv[1]))
        others = "; ".join(f"{n}: {why}" for n, why in self.reasons.items())
        return (f"runtime {self.runtime} {self.precision} ({self.how}; per {self.batch} views: {times or 'not timed'})"
                + (f"; not serving: {others}" if others else ""))


def candidates(runtime: str = AUTO, precision: str = AUTO, admitted=None) -> tuple[list, dict, set]:
    """(pairs to try in order, reasons for the pairs left out, the pairs the operator named).

    ``auto`` runtime and precision: TensorFlow float32, then every installed export that
    ``admitted(runtime, precision)`` (None, or the reason it is not) lets in. A named runtime: its
    float32 (named, no record needed) and its admitted other precisions. A named precision: every
    installed runtime at it, named. Both named: that pair alone. ``admitted`` None admits all."""
    check_choice(runtime, precision)
    named_r, named_p = runtime != AUTO, precision != AUTO
    pairs, reasons, named = [], {}, set()
    for r, p in (REFERENCE, *EXPORTS):
        if (named_r and r != runtime) or (named_p and p != precision):
            continue
        name = pair_name(r, p)
        if not installed(r):
            reasons[name] = f"the Python package {_RUN[r]!r} is not installed"
            continue
        if named_p or (named_r and p == "float32"):  # what the operator names serves without a record
            named.add((r, p))
            pairs.append((r, p))
            continue
        why = None if (r, p) == REFERENCE or admitted is None else admitted(r, p)
        if why:
            reasons[name] = f"not admitted: {why}"
            continue
        pairs.append((r, p))
    return pairs, reasons, named


def _median_ms(runners: dict, batch: int, reps: int) -> dict:
    """Median wall ms per call of ``batch`` rows for each runner, the runners taking turns."""
    x = np.random.default_rng(0).uniform(0, 255, (batch, 48, 48, 1)).astype(np.float32)
    for run in runners.values():  # untimed: TensorFlow compiles the shape, the others plan it
        run(x)
    times = {n: [] for n in runners}
    for _ in range(reps):
        for n, run in runners.items():
            t = time.perf_counter()
            run(x)
            times[n].append((time.perf_counter() - t) * 1000)
    return {n: statistics.median(v) for n, v in times.items()}


def choose(model, runtime: str | None = AUTO, precision: str | None = AUTO, *, models_dir, members,
           views: str = "none", threads: int = 0, calibration_data=None, batch: int = TIMING_BATCH,
           reps: int = TIMING_REPS) -> tuple[Runner, Choice]:
    """The Runner that serves the Keras ensemble ``model`` here, and the Choice that says why.

    The ``candidates`` are loaded (exported first when not cached); one that fails to export or load
    is left out with its reason, logged. Those loaded are timed on ``reps`` calls of ``batch`` rows
    each, in turns; the fastest float32 serves unless a lower precision is faster by more than
    ``MARGIN``: ``t_low < (1 - MARGIN) * t_float32``. When none loads, TensorFlow float32 serves."""
    runtime, precision = runtime or AUTO, precision or AUTO
    if batch < 1 or reps < 1:
        raise ValueError(f"batch and reps must be >= 1, got {batch!r} and {reps!r}")
    logger = logging.getLogger(__name__)
    md = Path(models_dir)
    record = read_admissions(md)
    weights = weights_key(md, members) if record else ""

    def admitted(r, p):
        try:
            return refusal(record, weights, views, r, p, _key_of(md, members, r, p, views))
        except Exception as e:  # noqa: BLE001 - a key that cannot be computed admits nothing
            return f"{type(e).__name__}: {e}"

    pairs, reasons, named = candidates(runtime, precision, admitted)
    runners = {}
    for r, p in pairs:
        try:
            runners[pair_name(r, p)] = _load(model, r, p, md, members, views, threads, calibration_data)
        except Exception as e:  # noqa: BLE001 - the next candidate serves instead
            reasons[pair_name(r, p)] = f"failed to load: {type(e).__name__}: {e}"[:300]
            logger.warning("%s %s unusable (%s: %s): trying the next runtime", r, p, type(e).__name__, e)
    if not runners:
        runner = KerasRunner(model)
        runner.output_shape = tuple(model.output_shape)
        return runner, Choice(*REFERENCE, "fallback", {}, reasons, batch)
    timings = _median_ms(runners, batch, reps)  # a lone named pair too: the log and /healthz show its speed
    f32 = [n for n in timings if n.endswith("/float32")]
    low = [n for n in timings if not n.endswith("/float32")]
    best = min(f32, key=timings.get) if f32 else None
    fast = min(low, key=timings.get) if low else None
    pick = fast if fast and (best is None or timings[fast] < (1 - MARGIN) * timings[best]) else best
    for n, t in timings.items():
        if n != pick:
            reasons[n] = (f"{t:.1f} ms, not {100 * MARGIN:.0f} % faster than {pick}'s {timings[pick]:.1f} ms"
                          if pick == best and n == fast else f"{t:.1f} ms, slower than {pick}'s {timings[pick]:.1f} ms")
    r, p = pick.split("/")
    runner = runners.pop(pick)
    runners.clear()  # the others' interpreters and sessions go now
    runner.output_shape = tuple(model.output_shape)
    how = "named" if len(pairs) == 1 and (r, p) in named else "measured"
    return runner, Choice(r, p, how, {n: round(t, 2) for n, t in timings.items()}, reasons, batch)

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
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

RUNTIMES = ("tensorflow", "litert", "onnx")
PRECISIONS = ("float32", "float16", "int8")
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
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES} (or 'auto'), got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if runtime == "tensorflow" and precision != "float32":
        raise ValueError(f"the tensorflow runtime runs float32 only, got precision {precision!r}")


def resolve(runtime: str | None) -> str:
    """A runtime name; ``auto`` (or None) is the served default: LiteRT where installed, else TensorFlow."""
    if runtime in (None, "auto"):
        return "litert" if installed("litert") else "tensorflow"
    check(runtime)
    if not installed(runtime):
        raise ValueError(f"runtime {runtime!r} needs the Python package {_RUN[runtime]!r} (see requirements.txt)")
    return runtime


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


def load(model, runtime: str | None = "tensorflow", precision: str = "float32", *, models_dir=None,
         members=(), views: str = "none", threads: int = 0, calibration_data=None) -> Runner:
    """A Runner for the Keras ensemble ``model`` in ``runtime``: the cached export when there is one,
    else exported now (int8: calibrated on Training faces from ``calibration_data`` or $FER2013_PATH).
    With ``auto`` (or None), a runtime that cannot export or load falls back to TensorFlow, logged."""
    auto = runtime in (None, "auto")
    runtime = resolve(runtime)
    check(runtime, precision)
    runner = _load(model, runtime, precision, auto, models_dir, members, views, threads, calibration_data)
    runner.output_shape = tuple(model.output_shape)
    return runner


def _load(model, runtime, precision, auto, models_dir, members, views, threads, calibration_data) -> Runner:
    if runtime == "tensorflow":
        return KerasRunner(model)
    if models_dir is None or not members:
        raise ValueError("an exported runtime needs the models folder and the member names (for its cache key)")
    threads = threads if threads > 0 else (os.cpu_count() or 1)
    try:
        key = export_key(Path(models_dir), list(members), runtime, precision, views)
        path = cache_dir() / f"{key}.{'tflite' if runtime == 'litert' else 'onnx'}"
        if not path.is_file():
            calib = calibration_inputs(views, data_path=calibration_data) if precision == "int8" else None
            export(model, runtime, precision, path, calib)
        return (LiteRTRunner if runtime == "litert" else OnnxRunner)(path, precision, threads)
    except Exception as e:
        if not auto:
            raise
        logging.getLogger(__name__).warning("%s %s unusable (%s: %s): running TensorFlow float32 instead",
                                            runtime, precision, type(e).__name__, e)
        return KerasRunner(model)


def clear_cache() -> None:
    """Remove every cached export (they are rebuilt on the next start)."""
    shutil.rmtree(cache_dir(), ignore_errors=True)

"""Inference: ``probabilities``, the one way any model's outputs are computed (training's sidecar
metrics, the ensemble's choice, evaluation, serving), and the Predictor, one ensemble loaded once for
the CLI and the web server."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store, tta as tta_views
from .ensemble import combine as combine_members
from .faces import (DEFAULT_DETECTOR, MAX_FACES, FaceDetector, decode_image, find_faces, make_detector, read_image_file,
                    to_gray)
from .runtime import AUTO, DEFAULT_PRECISION, DEFAULT_RUNTIME

# Batches are padded to these sizes so the compiled predict function sees a handful of shapes
# (compiled once each at warm-up) instead of retracing for every new batch size.
BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _run(model, x: np.ndarray) -> np.ndarray:
    """``model``'s float64 outputs for float32 images (K, 48, 48, 1), in chunks of at most the
    largest bucket; for Keras (one compiled function per shape) each chunk is padded up to a bucket."""
    run = getattr(model, "predict_on_batch", model)
    pads = getattr(model, "pads", True)
    out = []
    for i in range(0, len(x), BUCKETS[-1]):
        chunk = x[i:i + BUCKETS[-1]]
        b = next(s for s in BUCKETS if s >= len(chunk)) if pads else len(chunk)
        padded = np.concatenate([chunk, np.zeros((b - len(chunk), 48, 48, 1), np.float32)]) if b > len(chunk) else chunk
        out.append(np.asarray(run(padded))[:len(chunk)])
    return np.concatenate(out).astype(np.float64)


def probabilities(model, faces: np.ndarray, tta) -> np.ndarray:
    """A model's outputs for uint8 faces (N, 48, 48), averaged over the views of ``tta``
    (fer_core.tta): float64 (N, C) for a member, (N, M, C) for the Predictor's stacked members.
    ``model`` is a Keras model or a ``fer_core.runtime.Runner`` (the same model exported). Every
    view of every face goes through the model (``view_probabilities``, view by view)."""
    v, n = tta_views.n_views(tta), len(faces)
    p = view_probabilities(model, faces, tta, [(i, j) for j in range(v) for i in range(n)])
    return p.reshape(v, n, *p.shape[1:]).mean(axis=0)


def view_probabilities(model, faces: np.ndarray, tta, picks) -> np.ndarray:
    """A model's outputs for chosen views of uint8 faces (N, 48, 48): ``picks`` lists (face, view)
    pairs, view j being ``fer_core.tta.views(faces, tta)[j]``; float64 (len(picks), ...) in that
    order. One call through the model for all of them (fer_core/spread.py's one view a frame)."""
    views = tta_views.views(faces, tta)  # checks the shape
    n = len(views[0])
    bad = [(i, j) for i, j in picks if not (0 <= i < n and 0 <= j < len(views))]
    if bad:
        raise ValueError(f"picks must be (face in 0..{n - 1}, view in 0..{len(views) - 1}), got {bad[:3]}")
    if not picks:
        return np.zeros((0, *model.output_shape[1:]))
    return _run(model, np.stack([views[j][i] for i, j in picks])[..., None])


class Predictor:
    """An ensemble of members from a models folder.

    ``predict_faces`` takes uint8 crops (N, 48, 48) and returns ensemble probabilities (N, C) and
    each member's (N, M, C). All members run in one compiled call: a Keras model whose outputs are
    every member's softmax, evaluated with ``predict_on_batch`` (a traced/jitted function on every
    backend, never an eager per-layer call).
    """

    def __init__(self, models_dir=None, tta: tta_views.TTA | str | bool | None = None,
                 detector: FaceDetector | str | None = None, runtime: str | None = DEFAULT_RUNTIME,
                 precision: str | None = DEFAULT_PRECISION, threads: int = 0, detector_threads: int = 1):
        """``detector``: a detector object, or its name (fer_core.config.DETECTORS; None: the served
        one, ``DEFAULT_DETECTOR``), made with ``detector_threads`` threads (BlazeFace's LiteRT).
        ``runtime``/``precision``: names, or ``auto`` (the default, as the server) for what
        ``fer_core.runtime.choose`` measures fastest here among the admitted ones (``self.choice``
        says why; without a runtimes.json, TensorFlow float32). Both named: loaded as named, no
        timing, a failure raised (``fer_core.runtime.REFERENCE`` is the scoring reference)."""
        import keras

        ens = store.load_ensemble(models_dir)  # raises ModelsError naming what is missing or wrong
        self.models_dir, self.spec, self.member_names = ens.models_dir, ens.spec, ens.names
        self.sidecars, self.labels, self.weights = ens.sidecars, ens.labels, ens.weights
        members, c = ens.members, len(ens.labels)
        # test-time views (fer_core.tta): the ensemble's own, chosen with it on PublicTest, unless overridden
        self.tta = tta_views.of(self.spec) if tta is None else tta_views.resolve(tta)
        inp = keras.Input(shape=(48, 48, 1), name="image")
        outs = [m(inp) for m in members]
        stacked = keras.layers.Concatenate(axis=1, name="members")(
            [keras.layers.Reshape((1, c), name=f"{n}_out")(o) for n, o in zip(self.member_names, outs)])
        self.model = keras.Model(inp, stacked, name="ensemble")
        self.detector = make_detector(detector or DEFAULT_DETECTOR, detector_threads) \
            if detector is None or isinstance(detector, str) else detector
        # what runs self.model: TensorFlow, or an exported copy in LiteRT / ONNX Runtime (fer_core/runtime.py);
        # 'auto' in either is the measured choice among the admitted ones (runtime.choose), told in self.choice
        from . import runtime as runtimes
        self.choice = None
        if runtime in (None, AUTO) or precision in (None, AUTO):
            self.runner, self.choice = runtimes.choose(self.model, runtime, precision, models_dir=self.models_dir,
                                                       members=self.member_names, views=self.tta, threads=threads)
        else:
            self.runner = runtimes.load(self.model, runtime, precision, models_dir=self.models_dir,
                                        members=self.member_names, views=self.tta, threads=threads)
        self.runtime, self.precision = self.runner.runtime, self.runner.precision

    def warm_up(self, faces: int) -> None:
        """Compile the predict function for every bucket up to ``faces`` faces (their views, that is)."""
        for b in BUCKETS:
            if b <= faces * tta_views.n_views(self.tta):
                self.runner(np.zeros((b, 48, 48, 1), np.float32))

    def member_probs(self, faces: np.ndarray, tta=None) -> np.ndarray:
        """Members' probabilities (N, M, C) for uint8 crops (N, 48, 48): all members in one call, in
        the runtime this predictor was loaded with, under its views or ``tta``'s."""
        return probabilities(self.runner, faces, self.tta if tta is None else tta)

    def predict_faces(self, faces: np.ndarray, tta=None) -> tuple[np.ndarray, np.ndarray]:
        """(ensemble probabilities (N, C), members' probabilities (N, M, C)); ``tta`` overrides the
        predictor's views for this call."""
        mp = self.member_probs(faces, tta)
        return self.combine(mp), mp

    def view_probs(self, faces: np.ndarray, picks, tta=None) -> np.ndarray:
        """Members' probabilities (len(picks), M, C) for the chosen (face, view) pairs of uint8 crops
        (N, 48, 48) under this predictor's views or ``tta``'s: one call (``view_probabilities``)."""
        return view_probabilities(self.runner, faces, self.tta if tta is None else tta, picks)

    def combine(self, member_probs: np.ndarray) -> np.ndarray:
        """The ensemble's probabilities (N, C) from its members' (N, M, C), by its rule's weights."""
        if len(member_probs) == 0:
            return np.zeros((0, len(self.labels)))
        return combine_members(member_probs.transpose(1, 0, 2), self.weights)

    def describe(self, probs: np.ndarray, member_probs: np.ndarray, boxes) -> list[dict]:
        """JSON-ready faces: box, label, probabilities per label, each member's vote."""
        faces = []
        for i, box in enumerate(boxes):
            p = probs[i]
            faces.append({
                "box": [int(v) for v in box],
                "label": self.labels[int(p.argmax())],
                "probabilities": {l: round(float(v), 4) for l, v in zip(self.labels, p)},
                "members": {n: {"label": self.labels[int(mp.argmax())], "confidence": round(float(mp.max()), 4)}
                            for n, mp in zip(self.member_names, member_probs[i])},
            })
        return faces

    def predict_image(self, img: np.ndarray, whole: bool = False, max_faces: int = MAX_FACES) -> list[dict]:
        """Faces in a BGR or grey image. ``whole`` treats the image as one pre-cropped face."""
        if whole:
            import cv2
            gray = to_gray(img)
            boxes = [(0, 0, gray.shape[1], gray.shape[0])]
            crops = cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)[None]
        else:
            boxes, crops = find_faces(img, self.detector, max_faces=max_faces)
        probs, mp = self.predict_faces(crops)
        return self.describe(probs, mp, boxes)

    def predict_bytes(self, data: bytes, **kw) -> list[dict]:
        return self.predict_image(decode_image(data), **kw)

    def predict_file(self, path, **kw) -> list[dict]:
        from .video import regular_file

        p = regular_file(path)  # a FIFO, a device or a link loop is named for what it is, never opened
        try:
            data = read_image_file(p)  # bounded: MAX_IMAGE_BYTES
        except OSError as e:  # unreadable (permissions), or gone since
            raise ValueError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
        try:
            return self.predict_bytes(data, **kw)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None

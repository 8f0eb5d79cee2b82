"""What the network saw, and why: Grad-CAM heat maps over a 48x48 face for each member and for the
ensemble.

Grad-CAM (Selvaraju et al., 2017): the gradient of a class's score with respect to a member's last
convolutional feature map, averaged over the map's positions, weighs that map's channels; the
rectified weighted sum, upsampled to the face, shows where the evidence for the class lies.

* The score is the class's log-probability: the members end in a softmax, whose probability
  saturates near 1 (its gradient vanishes on a confident face); the log-probability does not, and it
  still weighs the evidence for the class against the others, as the original's logit does.
* The feature map is the member's last convolution taken after the batch norm and ReLU that follow it
  at the same resolution (``feature_layer``): the rectified map its head reads (6x6 for the shipped
  members).
* The members see the face through the serving views (fer_core.tta): every view's map is taken back to
  the crop's coordinates (mirror undone, zoom undone) and the views are averaged, as their
  probabilities are.
* The ensemble's map is the members' maps weighted as the ensemble weighs the members for that class
  (``ensemble_map``).

Every map is float32 (48, 48) in [0, 1] (divided by its maximum; all zeros where no position carries
evidence for the class). Gradients need TensorFlow (the Keras backend of the server's worker).
"""
from __future__ import annotations

import numpy as np

from . import store, tta as tta_views

SIZE = 48


def _faces(faces) -> np.ndarray:
    x = np.asarray(faces)
    if x.ndim != 3 or x.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"faces must have shape (N, {SIZE}, {SIZE}), got {x.shape}")
    return x.astype(np.float32)


def _classes(class_index, n: int, c: int) -> np.ndarray:
    """One class index per face (a single int is used for every face)."""
    idx = np.broadcast_to(np.asarray(class_index), (n,)) if np.ndim(class_index) == 0 else np.asarray(class_index)
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer) or (n and (idx.min() < 0 or idx.max() >= c)):
        raise ValueError(f"class_index must be an int or {n} ints in [0, {c}), got {class_index!r}")
    return idx.astype(np.int64)


def feature_layer(model) -> str:
    """The name of the layer Grad-CAM reads: the last Conv2D, or the last layer after it that keeps
    its resolution (its batch norm, ReLU, a residual add): the rectified map the head pools."""
    import keras
    convs = [i for i, l in enumerate(model.layers) if isinstance(l, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"model {model.name!r} has no Conv2D layer to explain")
    pick = model.layers[convs[-1]]
    hw = tuple(pick.output.shape[1:3])
    for layer in model.layers[convs[-1] + 1:]:
        shape = getattr(layer, "output", None)
        if shape is None or len(shape.shape) != 4 or tuple(shape.shape[1:3]) != hw:
            break
        pick = layer
    return pick.name


class Probe:
    """A member's Grad-CAM probe: a Keras model with the member's input and two outputs, ``layer``'s
    feature map (default ``feature_layer``) and the class probabilities, and the compiled function
    that computes the raw maps (traced once: eager calls cost more in Python than these small
    networks cost in arithmetic)."""

    def __init__(self, model, layer: str | None = None):
        import keras
        import tensorflow as tf
        self.layer = layer or feature_layer(model)
        try:
            feats = model.get_layer(self.layer).output
        except ValueError:
            raise ValueError(f"model {model.name!r} has no layer {self.layer!r}") from None
        if len(feats.shape) != 4:
            raise ValueError(f"layer {self.layer!r} has output shape {tuple(feats.shape)}, not a feature map (N, H, W, K)")
        self.model = keras.Model(model.inputs, [feats, model.outputs[0]], name=f"{model.name}_cam")
        self.classes = int(model.outputs[0].shape[-1])
        # a crop member (models/ends.image_input) sees only the centre: its maps cover that, and 0 around
        from .models.ends import crop_of
        self.crop = crop_of(model)
        # one trace for every batch size: a retrace costs about a second, many times the maps' own cost
        self._fn = tf.function(self._cam, input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32),
                                                           tf.TensorSpec([None], tf.int32)])

    def _cam(self, x, idx):
        import tensorflow as tf
        with tf.GradientTape() as tape:
            feats, probs = self.model(x, training=False)
            # the faces are independent (inference mode): the gradient of the sum is each face's own
            score = tf.math.log(tf.gather(probs, idx, batch_dims=1) + 1e-12)
        grads = tape.gradient(score, feats)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))

    def __call__(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Unnormalised Grad-CAM (N, 48, 48) of faces ``x`` (N, 48, 48) as the model sees them,
        upsampled bilinearly from the feature map's resolution."""
        import cv2
        cam = np.asarray(self._fn(x[..., None].astype(np.float32), idx.astype(np.int32)), dtype=np.float32)
        c, inner = self.crop, SIZE - 2 * self.crop
        maps = np.stack([cv2.resize(m, (inner, inner), interpolation=cv2.INTER_LINEAR) for m in cam])
        return np.pad(maps, ((0, 0), (c, c), (c, c))) if c else maps


def unview(maps: np.ndarray, mode, k: int) -> np.ndarray:
    """Maps (N, 48, 48) computed on view ``k`` of ``tta.views(faces, mode)``, in the crop's
    coordinates: the mirror undone, and the zoomed view (the crop's central 46 px) shrunk back onto
    that centre (the 1 px border, which that view did not see, gets 0)."""
    import cv2
    mode = tta_views.resolve(mode)
    if not 0 <= k < tta_views.n_views(mode):
        raise ValueError(f"view {k!r} out of range for mode {str(mode)!r}")
    out = maps[:, :, ::-1] if k == 1 else maps
    if mode is tta_views.TTA.ZOOM_FLIP:
        b = (SIZE - tta_views._CROP) // 2
        small = np.stack([cv2.resize(np.ascontiguousarray(m), (tta_views._CROP,) * 2, interpolation=cv2.INTER_AREA)
                          for m in out])
        out = np.zeros_like(maps)
        out[:, b:b + tta_views._CROP, b:b + tta_views._CROP] = small
    return np.ascontiguousarray(out, dtype=np.float32)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum, into [0, 1]; a map without positive evidence stays 0."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0)
    top = maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0, np.float32)
    return np.where(top[:, None, None] > 0, maps / np.where(top > 0, top, 1)[:, None, None], 0).astype(np.float32)


def grad_cam(model, faces, class_index, layer: str | None = None, tta="none", probe: Probe | None = None) -> np.ndarray:
    """Grad-CAM maps float32 (N, 48, 48) in [0, 1] of a member ``model`` (raw 0..255 grey faces in,
    probabilities out) for uint8 faces (N, 48, 48) and ``class_index`` (an int, or one per face),
    averaged over the views of ``tta`` in the crop's coordinates. ``probe``: a ``Probe`` of ``model``
    made once by a caller that explains many faces."""
    x = _faces(faces)
    pr = probe if probe is not None else Probe(model, layer)
    idx = _classes(class_index, len(x), pr.classes)
    if len(x) == 0:
        return np.zeros((0, SIZE, SIZE), np.float32)
    views = tta_views.views(x, tta)
    raw = pr(np.concatenate(views), np.tile(idx, len(views)))  # every view in one call
    cams = [unview(raw[k * len(x):(k + 1) * len(x)], tta, k) for k in range(len(views))]
    return normalise(np.mean(cams, axis=0))


def ensemble_map(member_maps, weights, class_index) -> np.ndarray:
    """The ensemble's maps (N, 48, 48) in [0, 1] from its members' (M, N, 48, 48): each member weighted
    as the ensemble weighs it for the explained class (``weights`` (M, C), fer_core.ensemble), then
    divided by the maximum."""
    maps = np.asarray(member_maps, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[2:] != (SIZE, SIZE) or w.ndim != 2 or w.shape[0] != maps.shape[0]:
        raise ValueError(f"member_maps (M, N, {SIZE}, {SIZE}) and weights (M, C) must agree on M, got "
                         f"{maps.shape} and {w.shape}")
    idx = _classes(class_index, maps.shape[1], w.shape[1])
    per_face = w[:, idx]                                   # (M, N): each member's weight for each face's class
    per_face = per_face / np.maximum(per_face.sum(axis=0, keepdims=True), 1e-12)
    return normalise(np.einsum("mn,mnhw->nhw", per_face, maps))


class Explainer:
    """An ensemble's members in Keras, with their Grad-CAM probes, for explaining faces: the same
    members, weights and views (``ensemble.json``) as ``fer_core.predict.Predictor``, or ``tta``."""

    def __init__(self, models_dir=None, tta=None):
        ens = store.load_ensemble(models_dir)  # the same members, labels and weights as Predictor's
        self.models_dir, self.member_names, self.members = ens.models_dir, ens.names, ens.members
        self.labels, self.weights = ens.labels, ens.weights
        self.layers = [feature_layer(m) for m in self.members]
        self.probes = [Probe(m, layer) for m, layer in zip(self.members, self.layers)]
        self.tta = tta_views.of(ens.spec) if tta is None else tta_views.resolve(tta)

    def warm_up(self) -> None:
        """Trace every member's Grad-CAM function for one face (the page asks about one), so that
        the first request does not pay for it (about 1.5 s here)."""
        self.explain(np.zeros((1, SIZE, SIZE), np.uint8), 0)

    def explain(self, faces, class_index) -> tuple[np.ndarray, np.ndarray]:
        """(the ensemble's maps (N, 48, 48), each member's (M, N, 48, 48)) for uint8 faces and the
        class to explain (an int, or one per face: the ensemble's label, for the page)."""
        members = np.stack([grad_cam(m, faces, class_index, tta=self.tta, probe=p)
                            for m, p in zip(self.members, self.probes)])
        return ensemble_map(members, self.weights, class_index), members

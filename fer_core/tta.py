"""Test-time augmentation: the views of a face whose predictions are averaged.

Modes:
  ``none``       the face as it is (1 view);
  ``flip``       the face and its mirror (2 views);
  ``zoom-flip``  the face zoomed by 1 px a side (its 46 px centre resized back to 48 px, bilinear)
                 and the mirror of that (2 views, the same cost as ``flip``);
  ``zoom``       the zoomed face alone (1 view): ``zoom-flip``'s first view, half its cost (what a
                 new face gets from a server under load, ``first_view``); better than ``none`` for
                 the reason below.

Why ``zoom-flip``: the augmentation layers resample every training image (shift, rotation and zoom
all interpolate bilinearly), so the members learn on slightly smoothed faces and score better on a
resampled view than on the raw pixels. Which mode serves is chosen on PublicTest with the members and
the rule (``fer_core.evaluate.choose_ensemble``, run by ``train_all.py``) and stored in
``ensemble.json`` (see docs/training.md for the measurement).
"""
from __future__ import annotations

import enum

import numpy as np


class TTA(enum.StrEnum):
    """A test-time views mode: the one type for it in code, configs and files (where it is the
    mode's name: a ``StrEnum`` compares, hashes and serialises as that string)."""
    NONE = "none"
    FLIP = "flip"
    ZOOM_FLIP = "zoom-flip"
    ZOOM = "zoom"


MODES = tuple(TTA)
_SIZE, _CROP = 48, 46


def resolve(mode) -> TTA:
    """The mode for a mode name, or for a boolean as files written before the modes existed stored
    it (sidecars' ``"tta": true``: the mirror was averaged, 'flip'; ``false``: 'none')."""
    if mode is True:
        return TTA.FLIP
    if mode is False:
        return TTA.NONE
    if isinstance(mode, str) and mode in MODES:
        return TTA(mode)
    raise ValueError(f"tta must be one of {tuple(str(m) for m in MODES)} (or a boolean), got {mode!r}")


def of(stored: dict) -> TTA:
    """The mode a stored dict names under ``tta`` (ensemble.json, metrics.json's ``chosen``, a
    sidecar's ``train``): the ensembles and members from before the key existed averaged the mirror."""
    return resolve(stored.get("tta", TTA.FLIP))


def n_views(mode) -> int:
    return 1 if resolve(mode) in (TTA.NONE, TTA.ZOOM) else 2


def _bilinear(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of 1-D bilinear resizing with pixel centres at +0.5, as OpenCV's INTER_LINEAR."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    frac = pos - lo
    m = np.zeros((dst, src))
    np.add.at(m, (np.arange(dst), lo), 1 - frac)
    np.add.at(m, (np.arange(dst), hi), frac)
    return m.astype(np.float32)


_ZOOM = _bilinear(_CROP, _SIZE)


def zoom(x: np.ndarray) -> np.ndarray:
    """Faces (N, 48, 48) zoomed by 1 px a side: rows and columns resized separately (separable bilinear)."""
    b = (_SIZE - _CROP) // 2
    centre = np.asarray(x, dtype=np.float32)[:, b:b + _CROP, b:b + _CROP]
    return _ZOOM @ centre @ _ZOOM.T  # rows, then columns: two batched matmuls


def first_view(mode) -> TTA:
    """The one-view mode that is ``mode``'s first view (``views(x, first_view(m))[0]`` equals
    ``views(x, m)[0]``): a face given one view only (fer_core/spread.py) got this mode."""
    mode = resolve(mode)
    return {TTA.FLIP: TTA.NONE, TTA.ZOOM_FLIP: TTA.ZOOM}.get(mode, mode)


def views(x: np.ndarray, mode) -> list[np.ndarray]:
    """The views of faces (N, 48, 48) that ``mode`` averages over, as float32 arrays of the same shape."""
    mode = resolve(mode)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (_SIZE, _SIZE):
        raise ValueError(f"faces must have shape (N, {_SIZE}, {_SIZE}), got {x.shape}")
    if mode is TTA.NONE:
        return [x]
    if mode in (TTA.ZOOM, TTA.ZOOM_FLIP):
        x = zoom(x)
    if mode is TTA.ZOOM:
        return [x]
    return [x, np.ascontiguousarray(x[:, :, ::-1])]

"""Label protocols: FER2013's 7 classes and the report's 6 (Disgust merged into Angry)."""
from __future__ import annotations

import numpy as np

LABELS_7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABELS_6 = ("angry", "fear", "happy", "sad", "surprise", "neutral")
# 7-class index -> 6-class index: Disgust (1) joins Angry (0), the rest shift down.
MAP_7_TO_6 = np.array([0, 0, 1, 2, 3, 4, 5])


def labels_for(num_classes: int) -> tuple[str, ...]:
    if num_classes == 7:
        return LABELS_7
    if num_classes == 6:
        return LABELS_6
    raise ValueError(f"num_classes must be 7 or 6, got {num_classes!r}")


def to_6_labels(y7: np.ndarray) -> np.ndarray:
    """Map integer 7-class labels to the 6-class protocol."""
    return MAP_7_TO_6[np.asarray(y7, dtype=np.int64)]


def to_6_probs(p7: np.ndarray) -> np.ndarray:
    """Merge a 7-class probability array's Angry and Disgust columns (last axis)."""
    p7 = np.asarray(p7)
    if p7.shape[-1] != 7:
        raise ValueError(f"expected 7 classes on the last axis, got shape {p7.shape}")
    return np.concatenate([p7[..., :1] + p7[..., 1:2], p7[..., 2:]], axis=-1)

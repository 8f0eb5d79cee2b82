"""Knowledge distillation: a member learns from an ensemble's probabilities as well as the labels.

The targets of a distilled member mix the teacher's probabilities with the (possibly soft) labels:

    t_i = (1 - d) * y_i + d * q_i

where ``y_i`` is image i's one-hot label (or its soft target), ``q_i`` the teacher ensemble's
probabilities for the same unaugmented image, under the views the ensemble is served with
(fer_core.tta), and ``d`` = ``TrainConfig.distill`` in [0, 1]. The member is trained with the usual
cross-entropy against ``t`` (on augmented copies of the image, like any member).

The teacher's probabilities on Training are computed once per teacher and cached next to the run
(``<out>/_teacher/<digest>.npz``): the digest covers the ensemble's spec, its members' weights, the
views and the images, so a changed teacher or data is never read from a stale cache.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from . import store

# The registry's name for the repository's shipped ensemble (models/, or FER_MODELS): a member
# distilled from it names it this way so the registry does not depend on the working directory.
SHIPPED = "shipped"


def teacher_dir(teacher: str) -> Path:
    """The models folder that ``teacher`` names: ``"shipped"`` or a path."""
    return store.resolve_models_dir(None if teacher == SHIPPED else teacher)


def fingerprint(models_dir: Path, faces: np.ndarray, views) -> str:
    """sha256 over the ensemble spec, every member's sidecar and weights, the views and the faces."""
    h = hashlib.sha256()
    spec_path = models_dir / "ensemble.json"
    members = store.check_models_dir(models_dir).names
    h.update(spec_path.read_bytes() if spec_path.is_file() else b"no ensemble.json")
    for name in members:
        for f in ("member.json", "weights.npz"):
            h.update((models_dir / name / f).read_bytes())
    h.update(str(views).encode())
    h.update(np.ascontiguousarray(faces, dtype=np.uint8).tobytes())
    return h.hexdigest()


def teacher_probabilities(teacher: str, faces: np.ndarray, classes: int, cache_dir: Path) -> tuple[np.ndarray, dict]:
    """The teacher ensemble's probabilities (N, ``classes``) for uint8 faces (N, 48, 48), and a
    description for the member's sidecar (folder, members, views, digest). 7-class teachers are merged
    to 6 classes for a 6-class student (fer_core.labels.to_6_probs)."""
    from .labels import to_6_probs
    from .predict import Predictor
    from .runtime import REFERENCE

    models_dir = teacher_dir(teacher)
    # the weights' own answers, whichever runtime serves fastest here; raises ModelsError naming a missing folder
    pred = Predictor(models_dir, runtime=REFERENCE[0], precision=REFERENCE[1])
    if len(pred.labels) not in (classes, 7):
        raise ValueError(f"teacher {models_dir} has {len(pred.labels)} classes; a {classes}-class member "
                         "cannot learn from it")
    digest = fingerprint(models_dir, faces, pred.tta)
    info = {"models": str(teacher), "members": pred.member_names, "views": str(pred.tta), "sha256": digest}
    cache = Path(cache_dir) / f"{digest[:24]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            probs = z["probs"]
    else:
        print(f"[distill] teacher {models_dir} ({'+'.join(pred.member_names)}, views {pred.tta}) "
              f"on {len(faces):,} images ...", file=sys.stderr, flush=True)
        probs = pred.predict_faces(faces)[0].astype(np.float32)
        store.atomic_save(cache, lambda p: np.savez_compressed(p, probs=probs))
    if probs.shape != (len(faces), len(pred.labels)):
        raise ValueError(f"{cache}: teacher probabilities of shape {probs.shape}, expected "
                         f"({len(faces)}, {len(pred.labels)})")
    if probs.shape[1] != classes:
        probs = to_6_probs(probs).astype(np.float32)
    return probs, info


def mix(targets: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * targets + weight * teacher``: rows stay distributions."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must be in [0, 1], got {weight!r}")
    if targets.shape != teacher.shape:
        raise ValueError(f"targets {targets.shape} and teacher probabilities {teacher.shape} differ in shape")
    return ((1.0 - weight) * targets + weight * teacher).astype(np.float32)

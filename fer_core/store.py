"""The models folder: members' compact weights with sidecars, the ensemble, the metrics.

Layout of a models folder::

    ensemble.json          chosen members, combination rule, weights, labels
    metrics.json           every table's numbers, with the test-time views they used (tta); read by /admin
    report.md              the same tables, for people
    <member>/member.json   sidecar: architecture, builder arguments, labels, training config, metrics
                           (on PublicTest and PrivateTest, with the test-time views named in metrics_tta)
    <member>/weights.npz   float16 weights, keyed by variable path
    <member>/log.csv, curve.png   per-epoch log and training curves
    <member>/ckpt/         resumable training state (never shipped)

Everything is written to a temporary name and renamed, so nothing is ever half-written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import tta

MODELS_ENV = "FER_MODELS"
DEFAULT_MODELS = Path(__file__).resolve().parent.parent / "models"


class ModelsError(FileNotFoundError):
    """A models folder that cannot be used; the message names the path."""


def resolve_models_dir(path=None) -> Path:
    return Path(path or os.environ.get(MODELS_ENV) or DEFAULT_MODELS)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; models must be readable by the server's user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save(path: Path, save_fn) -> None:
    """Call ``save_fn(tmp_path)`` then rename onto ``path`` (for writers that want a file name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras checks the ending ('.keras', '.weights.h5'): the temporary mark goes before it.
    ending = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    tmp = path.with_name(f".{path.name[:len(path.name) - len(ending)]}.tmp{ending}")
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelsError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelsError(f"{path}: not valid JSON ({e})") from None


def save_member_weights(model, path: Path, dtype=np.float16) -> None:
    """Weights as ``dtype`` (float16 by default: half the size, same predictions to ~1e-3)."""
    arrays = {v.path: np.asarray(v.numpy(), dtype=dtype if np.issubdtype(v.dtype, np.floating) else None)
              for v in model.weights}
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_member_weights(model, path: Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise ModelsError(f"{path}: weights file not found")
    try:
        with np.load(path) as z:
            stored = {k: z[k] for k in z.files}
    except Exception as e:  # zip or npy errors: a damaged file
        raise ModelsError(f"{path}: not a readable weights file ({e})") from None
    names = [v.path for v in model.weights]
    if set(names) != set(stored):
        missing = sorted(set(names) - set(stored))[:3]
        raise ModelsError(f"{path}: weights do not match the architecture (missing e.g. {missing})")
    for v in model.weights:
        a = stored[v.path]
        if tuple(a.shape) != tuple(v.shape):
            raise ModelsError(f"{path}: {v.path} has shape {a.shape}, model expects {tuple(v.shape)}")
        v.assign(a.astype(v.dtype))


def read_sidecar(member_dir: Path) -> dict:
    """A member's member.json. A sidecar from before ``metrics_tta`` scored its metrics with its
    training config's views: it is read with that label, where a sidecar written now has it."""
    side = read_json(Path(member_dir) / "member.json")
    if "metrics_tta" in side or "train" not in side:
        return side
    items = list(side.items())
    at = next((i for i, (k, _) in enumerate(items) if k == "metrics"), len(items))
    items.insert(at, ("metrics_tta", tta.of(side["train"])))
    return dict(items)


def load_member(member_dir: Path):
    """Rebuild a member from its sidecar and load its weights: (keras.Model, sidecar dict)."""
    from .models import build

    member_dir = Path(member_dir)
    side = read_sidecar(member_dir)
    model = build(side["arch"], **side["kwargs"])
    load_member_weights(model, member_dir / "weights.npz")
    return model, side


def list_members(models_dir: Path) -> list[str]:
    """Members of a models folder that have both a sidecar and weights."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir()
                  if (p / "member.json").is_file() and (p / "weights.npz").is_file())


@dataclasses.dataclass
class Ensemble:
    """A models folder's ensemble as ``load_ensemble`` reads it: its spec (``ensemble.json``, or a
    plain average of every member), the members in Keras with their sidecars, the labels they share
    and the weights (members, classes)."""
    models_dir: Path
    spec: dict
    names: list
    members: list
    sidecars: list
    labels: list
    weights: np.ndarray


def load_ensemble(models_dir=None) -> Ensemble:
    """The ensemble the app serves from ``models_dir`` (``resolve_models_dir``): ``ensemble.json``'s
    members and weights, or, without one, the plain average of every member. Raises ModelsError naming
    the folder or file for a missing folder, no members, members with other labels, or weights of
    the wrong shape."""
    models_dir = resolve_models_dir(models_dir)
    if not models_dir.is_dir():
        raise ModelsError(f"{models_dir}: models folder not found "
                          "(train with `python train_all.py` or pass --models DIR)")
    ens_path = models_dir / "ensemble.json"
    if ens_path.is_file():
        spec = read_json(ens_path)
    else:  # a folder of members without a chosen ensemble: plain average of all of them
        names = list_members(models_dir)
        if not names:
            raise ModelsError(f"{models_dir}: no trained members (member.json + weights.npz) and no ensemble.json")
        spec = {"members": names, "rule": "average", "weights": None}
    names = list(spec["members"])
    loaded = [load_member(models_dir / n) for n in names]
    sidecars = [side for _, side in loaded]
    labels = {tuple(s["labels"]) for s in sidecars}
    if len(labels) != 1:
        raise ModelsError(f"{models_dir}: members disagree on labels {labels}")
    labels = list(labels.pop())
    m, c = len(names), len(labels)
    w = spec.get("weights")
    weights = np.full((m, c), 1 / m) if w is None else np.asarray(w, dtype=np.float64)
    if weights.shape != (m, c):
        raise ModelsError(f"{ens_path}: weights shape {weights.shape} != ({m}, {c})")
    return Ensemble(models_dir, spec, names, [model for model, _ in loaded], sidecars, labels, weights)

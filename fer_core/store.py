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

Everything is read through one check, ``check_models_dir`` (``load_ensemble`` calls it before it
builds anything; ``read_sidecar`` checks each sidecar): ``ensemble.json`` is an object whose
``members`` is a list of plain names (``MEMBER_NAME``: no ``/``, no ``..``; each a folder of this
one), ``rule`` one of ``fer_core.ensemble.RULES``, ``weights`` null or members x classes numbers >= 0,
``tta`` a test-time views mode and ``labels`` the members' own; each ``member.json`` is an object
whose ``arch`` is a known family, ``kwargs`` that builder's arguments (``fer_core.models.arguments``)
for 48x48 grey inputs, counting at most ``MAX_MEMBER_PARAMS`` weights (``fer_core.models.count_params``,
from the arguments alone), and ``labels`` one distinct name per class. A file that breaks a rule is a
``ModelsError``: one line naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from . import tta
from .config import MAX_MEMBER_PARAMS
from .ensemble import RULES

MODELS_ENV = "FER_MODELS"
# A checkout keeps the shipped models beside the packages; `pip install .` puts the same files inside
# the package, as fer_core/shipped (pyproject.toml), where no models/ lies beside it.
_CHECKOUT_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = _CHECKOUT_MODELS if _CHECKOUT_MODELS.is_dir() else Path(__file__).resolve().parent / "shipped"
# A member is a folder of the models folder named by a plain name: no separator, no '..', no
# leading dot, so a name in ensemble.json can never reach outside the folder.
MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# ensemble.json and member.json are a few kB (a sidecar with its confusion matrices ~10 kB)
MAX_JSON_BYTES = 1 << 22
# What every caller feeds a member (fer_core.predict, fer_core.data): 48x48 grey faces
INPUT_SHAPE = (48, 48, 1)


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
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ModelsError(f"{path}: {size:,} bytes, over the limit of {MAX_JSON_BYTES:,} for a models folder's JSON")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelsError(f"{path}: not valid JSON ({e})") from None


def _short(value) -> str:
    """A value as an error line quotes it: its repr, cut at 80 characters."""
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _object(obj, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise ModelsError(f"{path}: expected a JSON object, got {type(obj).__name__} {_short(obj)}")
    return obj


def _labels(value, path: Path, field: str = "labels") -> list:
    if (not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v for v in value)
            or len(set(value)) != len(value)):
        raise ModelsError(f"{path}: {field}: expected a list of two or more distinct class names, got {_short(value)}")
    return value


def _views(stored: dict, key: str, path: Path, field: str) -> None:
    if key in stored:
        try:
            tta.resolve(stored[key])
        except ValueError as e:
            raise ModelsError(f"{path}: {field}: {e}") from None


def check_member_name(name, path: Path) -> str:
    """``name`` if it is a plain member name (``MEMBER_NAME``), else ModelsError naming ``path``."""
    if not isinstance(name, str) or not MEMBER_NAME.match(name):
        raise ModelsError(f"{path}: members: {_short(name)} is not a member name (letters, digits, '_', '.', '-'; "
                          "no '/', no leading '.' or '-'; a folder of the models folder)")
    return name


def check_sidecar(side, path: Path) -> dict:
    """A member's sidecar (``member.json`` at ``path``) as the module docstring says it must be:
    its architecture known, its builder arguments valid for 48x48 grey faces, at most
    ``MAX_MEMBER_PARAMS`` weights (counted from the arguments: nothing is built), one label per
    class. Returns ``side``; ModelsError naming the file and the field."""
    from .models import arguments, count_params

    side = _object(side, path)
    for key in ("arch", "kwargs", "labels"):
        if key not in side:
            raise ModelsError(f"{path}: {key}: missing")
    try:
        args = arguments(side["arch"], side["kwargs"])
        params = count_params(side["arch"], side["kwargs"])
    except ValueError as e:  # names the field (arch, kwargs, kwargs.<name>) and the value
        raise ModelsError(f"{path}: {e}") from None
    if tuple(args["input_shape"]) != INPUT_SHAPE:
        raise ModelsError(f"{path}: kwargs.input_shape: every caller feeds {list(INPUT_SHAPE)} faces, "
                          f"got {_short(args['input_shape'])}")
    if params > MAX_MEMBER_PARAMS:
        raise ModelsError(f"{path}: kwargs: {side['arch']} with these arguments holds {params:,} weights, over the "
                          f"limit of {MAX_MEMBER_PARAMS:,} (fer_core.config.MAX_MEMBER_PARAMS)")
    labels = _labels(side["labels"], path)
    if args["num_classes"] != len(labels):
        raise ModelsError(f"{path}: labels: {len(labels)} labels, but kwargs.num_classes is {args['num_classes']}")
    if "train" in side and not isinstance(side["train"], dict):
        raise ModelsError(f"{path}: train: expected an object, got {_short(side['train'])}")
    _views(side.get("train") or {}, "tta", path, "train.tta")
    _views(side, "metrics_tta", path, "metrics_tta")
    return side


def check_ensemble_spec(spec, path: Path) -> dict:
    """``ensemble.json`` (at ``path``) as the module docstring says it must be, on its own; what needs
    the members (labels, the weights' shape) ``check_models_dir`` checks. Returns ``spec``."""
    spec = _object(spec, path)
    members = spec.get("members")
    if "members" not in spec:
        raise ModelsError(f"{path}: members: missing (a list of member folder names)")
    if not isinstance(members, list) or not members:
        raise ModelsError(f"{path}: members: expected a list of one or more member names, got {_short(members)}")
    for name in members:
        check_member_name(name, path)
    if len(set(members)) != len(members):
        raise ModelsError(f"{path}: members: a member named twice in {_short(members)}")
    if "rule" in spec and spec["rule"] not in RULES:
        raise ModelsError(f"{path}: rule: expected one of {', '.join(RULES)}, got {_short(spec['rule'])}")
    w = spec.get("weights")
    if w is not None:
        ok = isinstance(w, list) and all(
            isinstance(row, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          and math.isfinite(v) and v >= 0 for v in row) for row in w)
        if not ok:
            raise ModelsError(f"{path}: weights: expected null or a list per member of numbers >= 0 (one per "
                              f"class), got {_short(w)}")
    _views(spec, "tta", path, "tta")
    if "labels" in spec:
        _labels(spec["labels"], path)
    return spec


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
    path = Path(member_dir) / "member.json"
    side = check_sidecar(read_json(path), path)
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
    side = read_sidecar(member_dir)  # checked and sized before anything is built
    try:
        model = build(side["arch"], **side["kwargs"])
    except (ValueError, TypeError) as e:  # arguments of the right kinds that the builder still refuses
        raise ModelsError(f"{member_dir / 'member.json'}: kwargs: {side['arch']} cannot be built with them "
                          f"({e})".replace("\n", " ")) from None
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


@dataclasses.dataclass
class Folder:
    """A models folder as ``check_models_dir`` read it, before anything is built: its spec, the
    members' names and sidecars, their labels and the weights (members, classes)."""
    models_dir: Path
    spec: dict
    names: list
    sidecars: list
    labels: list
    weights: np.ndarray


def check_models_dir(models_dir=None) -> Folder:
    """The one check of a models folder (``resolve_models_dir``), for every entry point (the CLI, the
    server's worker, evaluation, train_all.py): ``ensemble.json``'s members and weights, or, without
    one, the plain average of every member; every chosen member's sidecar checked and sized
    (``check_sidecar``) and its weights file present. Nothing is built. ModelsError naming the
    folder, or the file and the field: a missing folder, no members, a bad spec or sidecar, members
    with other labels, weights of the wrong shape."""
    models_dir = resolve_models_dir(models_dir)
    if not models_dir.is_dir():
        raise ModelsError(f"{models_dir}: models folder not found "
                          "(train with `python train_all.py` or pass --models DIR)")
    ens_path = models_dir / "ensemble.json"
    if ens_path.is_file():
        spec = check_ensemble_spec(read_json(ens_path), ens_path)
    else:  # a folder of members without a chosen ensemble: plain average of all of them
        names = list_members(models_dir)
        if not names:
            raise ModelsError(f"{models_dir}: no trained members (member.json + weights.npz) and no ensemble.json")
        spec = {"members": names, "rule": "average", "weights": None}
    names = list(spec["members"])
    sidecars = []
    for n in names:
        sidecars.append(read_sidecar(models_dir / n))
        if not (models_dir / n / "weights.npz").is_file():
            raise ModelsError(f"{models_dir / n / 'weights.npz'}: weights file not found")
    labels = {tuple(s["labels"]) for s in sidecars}
    if len(labels) != 1:
        raise ModelsError(f"{models_dir}: members disagree on labels {labels}")
    labels = list(labels.pop())
    if "labels" in spec and spec["labels"] != labels:
        raise ModelsError(f"{ens_path}: labels: {spec['labels']} are not the members' {labels}")
    m, c = len(names), len(labels)
    w = spec.get("weights")
    if w is not None and (len(w) != m or any(len(row) != c for row in w)):
        raise ModelsError(f"{ens_path}: weights: expected {m} rows (members) of {c} numbers (classes), "
                          f"got rows of {[len(row) for row in w][:12]}")
    weights = np.full((m, c), 1 / m) if w is None else np.asarray(w, dtype=np.float64)
    return Folder(models_dir, spec, names, sidecars, labels, weights)


def load_ensemble(models_dir=None) -> Ensemble:
    """The ensemble the app serves from ``models_dir`` (``resolve_models_dir``), as
    ``check_models_dir`` checked it, its members built and their weights loaded."""
    f = check_models_dir(models_dir)
    members = [load_member(f.models_dir / n)[0] for n in f.names]
    return Ensemble(f.models_dir, f.spec, f.names, members, f.sidecars, f.labels, f.weights)

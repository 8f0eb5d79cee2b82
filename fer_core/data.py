"""FER2013 loading: the Kaggle CSV (plain or .gz), the image-folder release, and FER+ votes.

Every loader returns a :class:`FerData` holding uint8 images (N, 48, 48), integer 7-class labels and
the split of each row, so that the protocol (train on Training, tune on PublicTest, report
PrivateTest) is the same whatever the source.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .labels import LABELS_7, to_6_labels

SPLITS = ("Training", "PublicTest", "PrivateTest")
SIDE = 48
NUM_PIXELS = SIDE * SIDE
DATA_ENV = "FER2013_PATH"
# Where the dataset lies beside a checkout in this project's workplace.
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "fer2013" / "fer2013.csv.gz"


class DataError(ValueError):
    """A dataset file that cannot be used; the message names the file (and row)."""


@dataclass
class Split:
    x: np.ndarray  # uint8 (N, 48, 48)
    y: np.ndarray  # int64 (N,), 7-class labels
    soft: np.ndarray | None = None  # float32 (N, C) target distribution (FER+), when used

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FerData:
    splits: dict[str, Split] = field(default_factory=dict)
    source: str = ""

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"split {name!r} not in {self.source} (has {sorted(self.splits)})")
        return self.splits[name]


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """The dataset path from an argument, else $FER2013_PATH, else ../shared beside the checkout."""
    if path:
        p = Path(path)
    elif os.environ.get(DATA_ENV):
        p = Path(os.environ[DATA_ENV])
    else:
        p = DEFAULT_DATA
    if not p.exists():
        raise FileNotFoundError(
            f"FER2013 data not found at {p}: pass --data PATH or set ${DATA_ENV} "
            "(fer2013.csv, fer2013.csv.gz or the image-folder release)")
    return p


def load_fer2013(path: str | os.PathLike | None = None, limit: int | None = None) -> FerData:
    """Load FER2013 from a CSV, a .csv.gz, an image folder (``train/<class>/*.jpg``...), or a packed
    ``.npz``/``.npz.xz`` made by :func:`pack` (the compact form carried to a GPU machine).

    ``limit`` keeps the first ``limit`` rows of each split (for quick runs and tests).
    """
    p = resolve_data_path(path)
    if p.is_dir():
        data = _load_folder(p)
    elif p.name.endswith((".npz", ".npz.xz")):
        data = _load_packed(p)
    else:
        data = _load_csv(p)
    if limit is not None:
        for name, s in data.splits.items():
            data.splits[name] = Split(s.x[:limit], s.y[:limit], None if s.soft is None else s.soft[:limit])
    return data


def _open_text(p: Path):
    with open(p, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, encoding="utf-8", newline="")


def _load_csv(p: Path) -> FerData:
    xs: dict[str, list] = {s: [] for s in SPLITS}
    ys: dict[str, list] = {s: [] for s in SPLITS}
    try:
        with _open_text(p) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{p}: empty file, expected a header 'emotion,pixels,Usage'")
            cols = [h.strip() for h in header]
            missing = [c for c in ("emotion", "pixels", "Usage") if c not in cols]
            if missing:
                raise DataError(f"{p}: missing column(s) {', '.join(missing)}; header is {cols}")
            ie, ip, iu = cols.index("emotion"), cols.index("pixels"), cols.index("Usage")
            for row_no, row in enumerate(reader, start=2):  # line 1 is the header
                if not row:
                    continue
                if len(row) < len(cols):
                    raise DataError(f"{p}: row {row_no}: {len(row)} fields, expected {len(cols)}")
                usage = row[iu].strip()
                if usage not in xs:
                    raise DataError(f"{p}: row {row_no}: unknown Usage {usage!r} (expected one of {SPLITS})")
                try:
                    label = int(row[ie])
                except ValueError:
                    raise DataError(f"{p}: row {row_no}: emotion {row[ie]!r} is not an integer") from None
                if not 0 <= label < len(LABELS_7):
                    raise DataError(f"{p}: row {row_no}: unknown emotion label {label} (expected 0..6)")
                pix = row[ip].split()
                if len(pix) != NUM_PIXELS:
                    raise DataError(f"{p}: row {row_no}: {len(pix)} pixels, expected {NUM_PIXELS}")
                try:
                    arr = np.array(pix, dtype=np.int32)
                except ValueError:
                    raise DataError(f"{p}: row {row_no}: pixels are not integers") from None
                if arr.min() < 0 or arr.max() > 255:
                    raise DataError(f"{p}: row {row_no}: pixel values outside 0..255")
                xs[usage].append(arr.astype(np.uint8).reshape(SIDE, SIDE))
                ys[usage].append(label)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error, zlib.error) as e:
        raise DataError(f"{p}: not a readable FER2013 CSV ({e})") from None
    data = FerData(source=str(p))
    for s in SPLITS:
        if ys[s]:
            data.splits[s] = Split(np.stack(xs[s]), np.array(ys[s], dtype=np.int64))
    if not data.splits:
        raise DataError(f"{p}: no data rows")
    return data


_FOLDER_SPLIT = {"train": "Training", "training": "Training", "val": "PublicTest",
                 "validation": "PublicTest", "test": "PrivateTest"}


def _load_folder(root: Path) -> FerData:
    """The image-folder release: ``<root>/<train|test>/<class>/<file>``.

    The split comes from the file name when it starts with Training_, PublicTest_ or PrivateTest_
    (as in the public release), else from the top folder (train -> Training, test -> PrivateTest).
    """
    import cv2

    xs: dict[str, list] = {s: [] for s in SPLITS}
    ys: dict[str, list] = {s: [] for s in SPLITS}
    found_any = False
    for top in sorted(root.iterdir()):
        if not top.is_dir() or top.name.lower() not in _FOLDER_SPLIT:
            continue
        for cls_dir in sorted(top.iterdir()):
            if not cls_dir.is_dir():
                continue
            cls = cls_dir.name.lower()
            if cls not in LABELS_7:
                raise DataError(f"{cls_dir}: unknown class folder {cls_dir.name!r} (expected {LABELS_7})")
            for f in sorted(cls_dir.iterdir()):
                if f.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".pgm"):
                    continue
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                if img is None:
                    raise DataError(f"{f}: not a readable image")
                if img.shape != (SIDE, SIDE):
                    img = cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                split = next((s for s in SPLITS if f.name.startswith(s + "_")), _FOLDER_SPLIT[top.name.lower()])
                xs[split].append(img)
                ys[split].append(LABELS_7.index(cls))
                found_any = True
    if not found_any:
        raise DataError(f"{root}: no images found under train/<class>/ or test/<class>/")
    data = FerData(source=str(root))
    rng = np.random.default_rng(0)  # folders come class by class: shuffle once so --limit keeps every class
    for s in SPLITS:
        if ys[s]:
            order = rng.permutation(len(ys[s]))
            data.splits[s] = Split(np.stack(xs[s])[order], np.array(ys[s], dtype=np.int64)[order])
    return data


# FER+ columns in fer2013new.csv, and where each lands among our 7 labels (contempt has no home).
_FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
_FERPLUS_TO_7 = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0, "disgust": 1, "fear": 2}


def load_ferplus_votes(path: str | os.PathLike, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """FER+ votes mapped to our 7 classes: (votes float32 (N, 7), usable bool (N,)).

    A row is usable when FER+ names an image and at least one vote falls on our 7 classes.
    """
    p = Path(path)
    votes, usable = [], []
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"Usage", "Image name", *_FERPLUS_EMOTIONS}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(sorted(missing))}")
        for row_no, row in enumerate(reader, start=2):
            v = np.zeros(len(LABELS_7), dtype=np.float32)
            try:
                for name, idx in _FERPLUS_TO_7.items():
                    v[idx] = float(row[name] or 0)
            except ValueError:
                raise DataError(f"{p}: row {row_no}: votes are not numbers") from None
            votes.append(v)
            usable.append(bool(row["Image name"].strip()) and v.sum() > 0)
    if len(votes) != num_rows:
        raise DataError(f"{p}: {len(votes)} rows, but the FER2013 file has {num_rows}")
    return np.stack(votes), np.array(usable)


def attach_ferplus(data: FerData, ferplus_path: str | os.PathLike, mode: str = "votes") -> FerData:
    """Replace the Training targets with FER+ ones: ``mode`` 'votes' (distribution) or 'majority'.

    Only Training changes; PublicTest and PrivateTest keep the FER2013 labels, the protocol's.
    Rows FER+ marks unusable are dropped from Training. Needs the CSV source (row order).
    """
    if mode not in ("votes", "majority"):
        raise ValueError(f"mode must be 'votes' or 'majority', got {mode!r}")
    total = sum(len(s) for s in data.splits.values())
    votes, usable = load_ferplus_votes(ferplus_path, total)
    # CSV rows are grouped by split in file order: rebuild the row index of each Training image.
    usage = _csv_usage(Path(data.source))
    train_rows = np.flatnonzero(usage == "Training")
    tr = data["Training"]
    if len(train_rows) != len(tr):
        raise DataError(f"{ferplus_path}: Training rows do not match {data.source}")
    keep = usable[train_rows]
    v = votes[train_rows][keep]
    if mode == "majority":
        soft = np.eye(len(LABELS_7), dtype=np.float32)[v.argmax(1)]
    else:
        soft = v / v.sum(1, keepdims=True)
    data.splits["Training"] = Split(tr.x[keep], soft.argmax(1).astype(np.int64), soft.astype(np.float32))
    return data


def _csv_usage(p: Path) -> np.ndarray:
    with _open_text(p) as f:
        reader = csv.reader(f)
        cols = next(reader)
        iu = cols.index("Usage")
        return np.array([row[iu].strip() for row in reader if row])


def to_protocol(split: Split, num_classes: int) -> Split:
    """A split in the 7- or 6-class protocol (soft targets merged the same way)."""
    if num_classes == 7:
        return split
    if num_classes != 6:
        raise ValueError(f"num_classes must be 7 or 6, got {num_classes!r}")
    soft = None
    if split.soft is not None:
        from .labels import to_6_probs
        soft = to_6_probs(split.soft)
    return Split(split.x, to_6_labels(split.y), soft)


def oversample(split: Split, fraction: float = 0.6, keep_class: int = 3, seed: int = 0) -> Split:
    """The report's oversampling: add a copy of ``fraction`` of the images of every class except
    ``keep_class`` (Happy, the largest)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    extra = []
    for c in np.unique(split.y):
        if c == keep_class:
            continue
        idx = np.flatnonzero(split.y == c)
        extra.append(rng.choice(idx, size=int(round(fraction * len(idx))), replace=False))
    idx = np.concatenate([np.arange(len(split.y))] + extra)
    return Split(split.x[idx], split.y[idx], None if split.soft is None else split.soft[idx])


def pack(data: FerData, path: str | os.PathLike, splits=SPLITS) -> Path:
    """Write ``splits`` as one uint8 .npz, xz-compressed when the name ends in .xz (FER2013's
    Training + PublicTest pack to ~55 MB with xz, against ~70 MB with zlib)."""
    import lzma

    from .store import atomic_write_bytes
    p = Path(path)
    if not p.name.endswith((".npz", ".npz.xz")):
        raise ValueError(f"pack path must end in .npz or .npz.xz, got {p}")
    arrays = {}
    for s in splits:
        arrays[f"{s}_x"] = data[s].x
        arrays[f"{s}_y"] = data[s].y.astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    atomic_write_bytes(p, lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME) if p.suffix == ".xz" else raw)
    return p


def _load_packed(p: Path) -> FerData:
    import lzma

    raw = p.read_bytes()
    try:
        if p.suffix == ".xz":
            raw = lzma.decompress(raw)
        z = np.load(io.BytesIO(raw))
    except (lzma.LZMAError, ValueError, OSError) as e:
        raise DataError(f"{p}: not a packed FER2013 file ({e})") from None
    data = FerData(source=str(p))
    for s in SPLITS:
        if f"{s}_x" in z.files:
            x, y = z[f"{s}_x"], z[f"{s}_y"].astype(np.int64)
            if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE) or len(x) != len(y):
                raise DataError(f"{p}: split {s} has images {x.shape} {x.dtype} and {len(y)} labels")
            data.splits[s] = Split(x, y)
    if not data.splits:
        raise DataError(f"{p}: no splits found")
    return data

"""Shared fixtures: a real face photo, a tiny models folder built without the dataset, and the
dataset itself where it lies beside the checkout (tests that need it skip cleanly without it)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "datasets" / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def astronaut_bgr():
    """scikit-image's astronaut (Eileen Collins, public domain): one clear frontal face."""
    from skimage import data
    import cv2
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_bgr):
    import cv2
    small = cv2.resize(astronaut_bgr, (320, 320), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def build_models_dir(path: Path, names=("vgg_q", "resnet_q"), seed: int = 0, rule: str = "class_recall",
                     **arch) -> Path:
    """A models folder of untrained tiny members (real builders, real files, seeded weights),
    for tests that exercise loading and serving without the dataset; ``arch`` overrides builder
    arguments of every member (``crop=4``)."""
    import keras
    from fer_core import store
    from fer_core.config import member_spec
    from fer_core.labels import LABELS_7
    from fer_core.models import build

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    for n in names:
        spec = member_spec(n)
        kwargs = dict(spec.kwargs, num_classes=7, name=n, **arch)
        m = build(spec.arch, **kwargs)
        store.save_member_weights(m, path / n / "weights.npz")
        store.atomic_write_json(path / n / "member.json", {
            "name": n, "arch": spec.arch, "kwargs": kwargs, "labels": list(LABELS_7), "classes": 7,
            "params": int(m.count_params()), "train": spec.train_config().to_dict(), "metrics": {}})
    w = rng.random((len(names), 7))
    store.atomic_write_json(path / "ensemble.json", {
        "members": list(names), "rule": rule, "weights": (w / w.sum(0)).tolist(),
        "labels": list(LABELS_7), "tta": True, "chosen_on": "test fixture"})
    return path


def write_random_metrics(md: Path, seed: int = 1) -> list[str]:
    """A real metrics.json (fer_core.metrics on random, better-than-chance predictions), report.md
    and confusion.png (fer_core.evaluate.write_metrics) for the models folder ``md``, as the admin
    page reads them. Returns the ensemble's member names."""
    from fer_core import store
    from fer_core.evaluate import write_metrics
    from fer_core.metrics import both_protocols

    rng = np.random.default_rng(seed)
    ens = store.read_json(md / "ensemble.json")
    names = ens["members"]

    def scored():
        y = rng.integers(0, 7, 300)
        p = rng.dirichlet(np.ones(7), 300)
        p[np.arange(150), y[:150]] += 1  # better than chance, so the numbers differ per class
        return both_protocols(y, p / p.sum(1, keepdims=True))

    splits = ("PublicTest", "PrivateTest")
    info = {}
    for n in names:
        side = store.read_json(md / n / "member.json")
        info[n] = {"arch": side["arch"], "params": side["params"], "trained": {"epochs": 3, "minutes": 0.1},
                   "recipe": {k: side["train"].get(k) for k in ("optimizer", "lr", "schedule", "augment",
                                                                "label_smoothing", "epochs")}}
    metrics = {"members": {n: {s: scored() for s in splits} for n in names},
               "ensemble": {s: scored() for s in splits},
               "rules": {r: {s: scored() for s in splits} for r in ("average", "class_recall")},
               "chosen": {"members": names, "rule": ens["rule"], "weights": ens["weights"], "tta": True},
               "generated": "2026-01-01T00:00:00+00:00", "data": "random labels (test)", "member_info": info}
    write_metrics(md, metrics)
    return names


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return build_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def fer_data_path():
    p = Path(os.environ.get("FER2013_PATH", SHARED_DATA))
    if not p.exists():
        pytest.skip(f"FER2013 not found at {p} (set FER2013_PATH)")
    return p


def main_crop(pred, jpeg: bytes):
    """The 48x48 crop (1, 48, 48) of a frame's largest face, as a whole-frame search finds it with
    ``pred``'s detector."""
    from fer_core.faces import decode_image, find_faces
    return find_faces(decode_image(jpeg, grey=True), pred.detector, max_faces=1)[1]

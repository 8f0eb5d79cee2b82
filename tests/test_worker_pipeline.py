"""The worker's overlap of decoding and detection with the ensemble (webapp.worker.handle_batch with
a prep pool): the same answers as the serial path, detection only in the pool's one thread, and the
ensemble called on each part as soon as that part is prepared."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fer_core.predict import Predictor
from webapp.worker import handle_batch
from webapp_testutil import main_crop


def test_overlapped_batch_answers_like_the_serial_one(tiny_models, astronaut_jpeg, monkeypatch):
    p = Predictor(tiny_models)
    frames = [astronaut_jpeg, b"junk", astronaut_jpeg, astronaut_jpeg, astronaut_jpeg[:700], astronaut_jpeg, astronaut_jpeg]
    ids = list(range(10, 10 + len(frames)))
    serial = handle_batch(p, ids, frames, 8, 2_100_000)

    detect_threads, calls = set(), []
    real_detect, real_predict = p.detector.detect_faces, p.view_probs  # what find_faces calls

    def detect(gray):
        detect_threads.add(threading.current_thread().name)
        return real_detect(gray)

    def predict(crops, picks, views=None):
        calls.append(len(crops))
        return real_predict(crops, picks, views)

    monkeypatch.setattr(p.detector, "detect_faces", detect)
    monkeypatch.setattr(p, "view_probs", predict)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-prep") as pool:
        out = handle_batch(p, ids, frames, 8, 2_100_000, prep_pool=pool, chunks=3)
    assert [r["id"] for r in out] == ids
    assert [r.get("code") for r in out] == [r.get("code") for r in serial] == [None, "bad_image", None, None,
                                                                                 "bad_image", None, None]
    for a, b in zip(out, serial):
        assert a.get("faces") is not None or a.get("error")
        if "faces" in a:
            assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
            np.testing.assert_allclose([list(f["probabilities"].values()) for f in a["faces"]],
                                       [list(f["probabilities"].values()) for f in b["faces"]], atol=2e-4)
    assert len(detect_threads) == 1 and next(iter(detect_threads)).startswith("fer-prep")
    assert calls == [2, 2, 1]  # parts of 3, 3 and 1 frames: 2, 2 and 1 faces (two frames are broken)


def test_a_full_batch_gives_each_face_one_view(tiny_models, astronaut_jpeg):
    """load_views_from frames or more in one batch: a face that is not followed gets the first view
    of the ensemble's own (zoom for zoom-flip), and each result says which views it got; a smaller
    batch keeps the ensemble's own."""
    p = Predictor(tiny_models, tta="zoom-flip")
    small = handle_batch(p, [1, 2], [astronaut_jpeg] * 2, 8, 2_100_000, load_views_from=3)
    full = handle_batch(p, [1, 2, 3], [astronaut_jpeg, b"junk", astronaut_jpeg], 8, 2_100_000, load_views_from=3)
    never = handle_batch(p, [1, 2, 3], [astronaut_jpeg] * 3, 8, 2_100_000, load_views_from=0)
    assert [r["views"] for r in small] == ["zoom-flip"] * 2 and [r["views"] for r in never] == ["zoom-flip"] * 3
    assert full[0]["views"] == full[2]["views"] == "zoom" and "views" not in full[1]  # the junk frame's error
    faces = [r["faces"][0] for r in (small[0], full[0])]
    assert faces[0]["box"] == faces[1]["box"]
    crop = main_crop(p, astronaut_jpeg)
    for face, views in zip(faces, ("zoom-flip", "zoom")):
        np.testing.assert_allclose(list(face["probabilities"].values()), p.predict_faces(crop, views)[0][0], atol=1e-4)
    # the two modes are different computations: the probabilities differ
    assert not np.allclose(list(faces[0]["probabilities"].values()), list(faces[1]["probabilities"].values()), atol=1e-6)


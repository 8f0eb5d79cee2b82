"""The frame pipeline (fer_core/pipeline.py) and the worker's wire form of its results: the overlap
of decoding and detection with the ensemble gives the serial path's answers, detection only in the
pipeline's one thread, and the ensemble called on each part as soon as that part is prepared."""
import threading

import numpy as np
import pytest

from fer_core.pipeline import FramePipeline
from fer_core.predict import Predictor
from webapp.worker import answer_batch
from conftest import main_crop


def pipeline(pred, **kw):
    """Frames searched whole, every view, no overlap, unless ``kw`` says otherwise."""
    return FramePipeline(pred, max_pixels=2_100_000, **dict(dict(track_every=0, spread_views=False, one_view_from=0,
                                                                 prep_chunks=0), **kw))


def test_overlapped_batch_answers_like_the_serial_one(tiny_models, astronaut_jpeg, monkeypatch):
    p = Predictor(tiny_models)
    frames = [astronaut_jpeg, b"junk", astronaut_jpeg, astronaut_jpeg, astronaut_jpeg[:700], astronaut_jpeg, astronaut_jpeg]
    ids = list(range(10, 10 + len(frames)))
    serial = answer_batch(pipeline(p), ids, frames)

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
    overlapped = pipeline(p, prep_chunks=3)
    out = answer_batch(overlapped, ids, frames)
    overlapped.close()
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
    """one_view_from frames or more in one batch: a face that is not followed gets the first view
    of the ensemble's own (zoom for zoom-flip), and each result says which views it got; a smaller
    batch keeps the ensemble's own."""
    p = Predictor(tiny_models, tta="zoom-flip")
    small = answer_batch(pipeline(p, one_view_from=3), [1, 2], [astronaut_jpeg] * 2)
    full = answer_batch(pipeline(p, one_view_from=3), [1, 2, 3], [astronaut_jpeg, b"junk", astronaut_jpeg])
    never = answer_batch(pipeline(p), [1, 2, 3], [astronaut_jpeg] * 3)
    assert [r["views"] for r in small] == ["zoom-flip"] * 2 and [r["views"] for r in never] == ["zoom-flip"] * 3
    assert full[0]["views"] == full[2]["views"] == "zoom" and "views" not in full[1]  # the junk frame's error
    faces = [r["faces"][0] for r in (small[0], full[0])]
    assert faces[0]["box"] == faces[1]["box"]
    crop = main_crop(p, astronaut_jpeg)
    for face, views in zip(faces, ("zoom-flip", "zoom")):
        np.testing.assert_allclose(list(face["probabilities"].values()), p.predict_faces(crop, views)[0][0], atol=1e-4)
    # the two modes are different computations: the probabilities differ
    assert not np.allclose(list(faces[0]["probabilities"].values()), list(faces[1]["probabilities"].values()), atol=1e-6)



def test_a_video_stream_keeps_track_ids_and_an_explained_frame_gets_its_crop(tiny_models, astronaut_jpeg):
    """Frames of one stream (bytes or decoded arrays) keep their face's id; a frame searched whole
    numbers its faces; an explained frame answers on all its views, with the main face's crop."""
    p = Predictor(tiny_models, tta="zoom-flip")
    pipe = pipeline(p, track_every=3, spread_views=True)
    from fer_core.faces import decode_image
    # a stream's views are recorded after its batch's one ensemble call: its next frame, next batch
    out = pipe.process([astronaut_jpeg], streams=["s"], now=0.0) + \
        pipe.process([decode_image(astronaut_jpeg), astronaut_jpeg], streams=["s", None], explained=[False, True], now=0.1)
    assert [r.tracks for r in out] == [[0], [0], [0]] and [r.error for r in out] == [None] * 3
    assert [r.spread for r in out] == [False, True, False] and out[0].crop is None
    crop = main_crop(p, astronaut_jpeg)
    np.testing.assert_array_equal(out[2].crop, crop[0])
    np.testing.assert_allclose(list(out[2].faces[0]["probabilities"].values()), p.predict_faces(crop)[0][0], atol=1e-4)
    wire = answer_batch(pipe, [5], [astronaut_jpeg], metas=[{"crop": True}])[0]
    assert wire["id"] == 5 and len(wire["crop"]) == 3072 and "tracks" not in wire and "track" not in wire["faces"][0]


@pytest.mark.parametrize("kw", [dict(max_faces=0), dict(track_every=-1), dict(prep_chunks=1.5), dict(track_still=-1),
                                dict(one_view_from=None)])
def test_bad_settings_name_the_value(tiny_models, kw):
    (name, value), = kw.items()
    with pytest.raises(ValueError, match=f"{name} must .*got {value!r}"):
        FramePipeline(Predictor(tiny_models), **kw)
    with pytest.raises(ValueError, match="streams must have one entry per frame \\(2\\), got 1"):
        pipeline(Predictor(tiny_models)).process([b"a", b"b"], streams=["x"])

"""Views spread over a followed face's frames (fer_core/spread.py): which views each frame computes,
and the answer, by hand; then through the worker on the tiny ensemble, where a still face's answer
must be the full views' answer to the float."""
import numpy as np
import pytest

from fer_core.spread import FaceViews
from conftest import main_crop


def p(*v):
    return np.array(v, dtype=float)


def test_a_new_face_gets_every_view_then_one_a_frame_in_turn():
    fv = FaceViews(2)
    assert fv.plan(1, 0.0) == [0, 1]
    mean, n, earlier = fv.record(1, 0.0, {0: p(1, 0), 1: p(0, 1)})
    assert mean.tolist() == [0.5, 0.5] and n == 2 and not earlier
    # both views are one frame old: the older (ties: the first) is computed again, the other reused
    assert fv.plan(2, 0.2) == [0]
    mean, n, earlier = fv.record(2, 0.2, {0: p(0.8, 0.2)})
    assert mean.tolist() == [0.4, 0.6] and n == 2 and earlier  # (0.8 + 0) / 2, (0.2 + 1) / 2
    assert fv.plan(3, 0.4) == [1]  # view 1 is from frame 1, two frames back: no longer recent
    mean, _, _ = fv.record(3, 0.4, {1: p(0.2, 0.8)})
    np.testing.assert_allclose(mean, [0.5, 0.5])  # (0.8 + 0.2) / 2, (0.2 + 0.8) / 2
    assert fv.plan(4, 0.6) == [0]


def test_under_load_a_face_without_recent_views_gets_the_first_only():
    fv = FaceViews(2)
    assert fv.plan(1, 0.0, at_most_one=True) == [0]
    mean, n, earlier = fv.record(1, 0.0, {0: p(0.6, 0.4)})
    assert mean.tolist() == [0.6, 0.4] and n == 1 and not earlier
    assert fv.plan(2, 0.3, at_most_one=True) == [1]  # its second frame completes the views
    mean, n, earlier = fv.record(2, 0.3, {1: p(0.2, 0.8)})
    np.testing.assert_allclose(mean, [0.4, 0.6])
    assert n == 2 and earlier


def test_old_views_are_not_reused():
    fv = FaceViews(2, max_age=1.0)
    fv.record(1, 0.0, {0: p(1, 0), 1: p(0, 1)})
    assert fv.plan(2, 1.5) == [0, 1]  # a pause longer than max_age: everything anew
    assert fv.plan(2, 1.5, at_most_one=True) == [0]
    mean, n, earlier = fv.record(2, 1.5, {0: p(0.3, 0.7)})
    assert mean.tolist() == [0.3, 0.7] and n == 1 and not earlier
    assert fv.plan(4, 1.6) == [0, 1]  # frame 3 never came for this face: frame 2's view is two frames back


def test_one_view_modes_compute_their_view_every_frame():
    fv = FaceViews(1)
    for frame in range(1, 4):
        assert fv.plan(frame, frame * 0.2) == [0]
        mean, n, earlier = fv.record(frame, frame * 0.2, {0: p(frame, 0)})
        assert mean.tolist() == [frame, 0] and n == 1 and not earlier


@pytest.mark.parametrize("bad", [0, 1.5, "2"])
def test_bad_arguments_name_the_value(bad):
    with pytest.raises(ValueError, match="n_views"):
        FaceViews(bad)
    with pytest.raises(ValueError, match="max_age"):
        FaceViews(2, max_age=0)
    with pytest.raises(ValueError, match="view must be in 0..1, got 2"):
        FaceViews(2).record(1, 0.0, {2: p(1, 0)})
    with pytest.raises(ValueError, match="at least one view"):
        FaceViews(2).record(1, 0.0, {})


def test_a_followed_still_face_gets_the_full_views_answer_at_one_view_a_frame(tiny_models, astronaut_jpeg):
    """Through the worker: a client's still frames, spread on, load on (one view a face): the first
    frame says it got the first view only, every later one has zoom-flip's answer exactly, each
    frame computing one view; without spreading, load gives one view on every frame."""
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from webapp.worker import answer_batch

    pred = Predictor(tiny_models, tta="zoom-flip")

    def pipeline(**kw):
        return FramePipeline(pred, **dict(dict(track_every=3, track_still=0.0, prep_chunks=0), **kw))
    computed = []
    real = pred.view_probs

    def count(crops, picks, tta=None):
        computed.append(len(picks))
        return real(crops, picks, tta)

    pred.view_probs = count
    loaded = pipeline(one_view_from=1, spread_views=True)
    out = [answer_batch(loaded, [k], [astronaut_jpeg], clients=["a"])[0] for k in range(5)]
    assert computed == [1] * 5
    assert [(r["views"], r["spread"]) for r in out] == [("zoom", False)] + [("zoom-flip", True)] * 4
    crop = main_crop(pred, astronaut_jpeg)
    full, _ = pred.predict_faces(crop, "zoom-flip")
    first, _ = pred.predict_faces(crop, "zoom")
    probs = [list(r["faces"][0]["probabilities"].values()) for r in out]
    np.testing.assert_allclose(probs[0], first[0], atol=1e-4)
    for q in probs[1:]:
        np.testing.assert_allclose(q, full[0], atol=1e-4)  # rounded to 4 places in the result
    # not under load, a new face gets both views at once; without spreading, each frame computes both
    computed.clear()
    fresh = answer_batch(pipeline(one_view_from=0, spread_views=True), [9], [astronaut_jpeg], clients=["b"])[0]
    unspread = pipeline(one_view_from=0, spread_views=False)
    plain = [answer_batch(unspread, [k], [astronaut_jpeg], clients=["c"])[0] for k in range(2)]
    assert computed == [2, 2, 2] and (fresh["views"], fresh["spread"]) == ("zoom-flip", False)
    assert [r["spread"] for r in plain] == [False, False]
    np.testing.assert_allclose(list(fresh["faces"][0]["probabilities"].values()), full[0], atol=1e-4)


def test_a_lost_face_loses_its_views(tiny_models, astronaut_jpeg):
    """The views a tracker keeps for a face go with it: a face that comes back starts its views anew."""
    import cv2

    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from webapp.worker import answer_batch

    pred = Predictor(tiny_models, tta="zoom-flip")
    pipe = FramePipeline(pred, track_still=0.0, spread_views=True, one_view_from=1, prep_chunks=0)
    blank_jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
    run = [answer_batch(pipe, [k], [jpeg], clients=["a"])[0]
           for k, jpeg in enumerate([astronaut_jpeg, astronaut_jpeg, blank_jpeg, astronaut_jpeg])]
    assert [len(r["faces"]) for r in run] == [1, 1, 0, 1]
    assert [(r["views"], r["spread"]) for r in run] == [("zoom", False), ("zoom-flip", True), ("zoom-flip", False),
                                                        ("zoom", False)]
    assert pipe.trackers.get("a", 0).kept.keys() == {1}  # the face found again has a new id, and only its views are kept


def test_a_batch_of_different_frames_answers_each_face_with_its_own_views(tiny_models, astronaut_bgr):
    """Five clients' frames in one batch, cut in parts for the prep thread (a face, junk, two faces,
    none, another face), twice: every face's answer is its own crop's zoom-flip answer, the first
    time with both views of this frame, the second (under load) with one view spread over the two
    frames; an answer closer to another face's than to its own would mean crossed faces."""
    import cv2

    from fer_core.faces import decode_image, find_faces
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from webapp.worker import answer_batch

    pred = Predictor(tiny_models, tta="zoom-flip")
    ast = cv2.resize(astronaut_bgr, (320, 320), interpolation=cv2.INTER_AREA)
    two = ast.copy()
    two[200:310, 200:310] = cv2.resize(astronaut_bgr[20:260, 110:350], (110, 110), interpolation=cv2.INTER_AREA)
    dim = cv2.convertScaleAbs(cv2.flip(ast, 1), alpha=0.6, beta=20)
    jpeg = lambda img: cv2.imencode(".jpg", img)[1].tobytes()  # noqa: E731
    frames = [jpeg(ast), b"junk", jpeg(two), jpeg(np.full((240, 320, 3), 128, np.uint8)), jpeg(dim)]
    want = []  # per frame: each face's zoom-flip answer on its whole-frame crop
    for f in frames:
        try:
            _, crops = find_faces(decode_image(f, grey=True), pred.detector)
        except ValueError:
            want.append(None)
            continue
        want.append(pred.predict_faces(crops)[0] if len(crops) else np.zeros((0, 7)))
    assert [None if w is None else len(w) for w in want] == [1, None, 2, 0, 1]
    everyone = np.concatenate([w for w in want if w is not None])
    pipe = FramePipeline(pred, track_still=0.0, spread_views=True, prep_chunks=3)
    try:
        for load_from, spread in ((0, False), (1, True)):
            pipe.one_view_from = load_from  # the same streams, a full batch the second time
            out = answer_batch(pipe, list(range(5)), frames, clients=list("abcde"))
            assert [r["id"] for r in out] == list(range(5)) and out[1]["code"] == "bad_image"
            for r, w in zip(out, want):
                if w is None:
                    continue
                assert len(r["faces"]) == len(w) and r["views"] == "zoom-flip" and r["spread"] == (spread and len(w) > 0)
                for face, mine in zip(r["faces"], w):
                    got = np.array(list(face["probabilities"].values()))
                    np.testing.assert_allclose(got, mine, atol=2e-3)
                    others = [o for o in everyone if not np.allclose(o, mine)]
                    assert others and all(np.abs(got - o).max() > np.abs(got - mine).max() for o in others)
    finally:
        pipe.close()


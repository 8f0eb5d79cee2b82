"""BlazeFace (fer_core.faces.BlazeFaceDetector): the shipped model file, its anchor decoding, faces
found on the two real photos that ship in our dependencies rolled by +-30 degrees, no face where
there is none, and crops levelled on the eyes (align_crop)."""
import shutil

import cv2
import numpy as np
import pytest

from fer_core.config import DETECTORS
from fer_core.faces import (ANCHOR_LAYOUTS, BLAZEFACE_NEAR_PATH, BLAZEFACE_PATH, BlazeFaceDetector, DetectorError, Face, align_crop, blazeface_anchors,
                            crop_face, decode_blazeface, find_faces, make_detector, weighted_nms)


@pytest.fixture(scope="module")
def bf():
    return BlazeFaceDetector()


def _photos():
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("L"))
    return {"astronaut": cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY), "grace_hopper": hopper}


PHOTOS = _photos()


def _rolled(gray, centre, angle):
    """``gray`` turned by ``angle`` degrees (counter-clockwise on screen) about ``centre``, and the map."""
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    return cv2.warpAffine(gray, m, gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE), m


def _centre(box):
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2])


# -- the model file ----------------------------------------------------------------------------------

def test_a_missing_or_different_model_file_is_refused_by_name(tmp_path):
    with pytest.raises(DetectorError, match="nothere.tflite: face detector model file missing"):
        BlazeFaceDetector(tmp_path / "nothere.tflite")
    bad = tmp_path / "other.tflite"
    data = bytearray(BLAZEFACE_PATH.read_bytes())
    data[-1] ^= 1  # one bit differs
    bad.write_bytes(bytes(data))
    with pytest.raises(DetectorError, match="other.tflite: sha256 .* is not the shipped model's"):
        BlazeFaceDetector(bad)
    with pytest.raises(DetectorError, match="gone.tflite: face detector model file missing"):
        BlazeFaceDetector(near_path=tmp_path / "gone.tflite")
    with pytest.raises(DetectorError, match="sha256 .* is not the shipped model's"):
        BlazeFaceDetector(near_path=BLAZEFACE_PATH)  # the full-range file where the short-range one belongs
    assert BLAZEFACE_NEAR_PATH.is_file()
    good = tmp_path / "copy.tflite"
    shutil.copy(BLAZEFACE_PATH, good)
    assert BlazeFaceDetector(good).side == 192


@pytest.mark.parametrize("kw", [dict(threads=0), dict(min_score=1.5), dict(nms_iou=0), dict(box_scale=-1),
                                dict(min_size=1), dict(level_context=1), dict(max_faces=0), dict(near_context=1.0)])
def test_bad_settings_raise_valueerror_naming_the_value(kw):
    with pytest.raises(ValueError, match=repr(next(iter(kw.values())))):
        BlazeFaceDetector(**kw)


def test_make_detector_names():
    served, full = make_detector("blazeface"), make_detector("blazeface-full")
    assert isinstance(served, BlazeFaceDetector) and (served._net.side, served._near.side) == (192, 128)
    assert full._near is full._net
    assert all(make_detector(n) is not None for n in DETECTORS)  # every name the settings accept
    with pytest.raises(ValueError, match="'yolo'"):
        make_detector("yolo")


# -- decoding ----------------------------------------------------------------------------------------

def test_anchors_are_the_full_range_grid():
    a = blazeface_anchors(192)
    assert a.shape == (2304, 2)  # the model's output has 2304 rows
    np.testing.assert_allclose(a[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(a[1], [1.5 / 48, 0.5 / 48])   # row by row: x moves first
    np.testing.assert_allclose(a[48], [0.5 / 48, 1.5 / 48])
    with pytest.raises(ValueError, match="side=190"):
        blazeface_anchors(190)


def test_anchors_of_the_short_range_layout():
    a = blazeface_anchors(128, *ANCHOR_LAYOUTS[128])
    assert a.shape == (896, 2)  # 16x16 cells x 2 anchors (stride 8), then 8x8 cells x 6 (three stride-16 layers)
    np.testing.assert_allclose(a[0], a[1])  # a cell's anchors together
    np.testing.assert_allclose(a[:4:2], [[0.5 / 16, 0.5 / 16], [1.5 / 16, 0.5 / 16]])
    np.testing.assert_allclose(a[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(a[518], [1.5 / 8, 0.5 / 8])
    with pytest.raises(ValueError, match="per_layer=0"):
        blazeface_anchors(128, (8,), 0)


def test_decoding_one_anchors_box_and_keypoints():
    a = blazeface_anchors(192)
    raw = np.zeros((2304, 16), np.float32)
    scores = np.full(2304, -10.0, np.float32)
    i = 48 * 10 + 20                                  # the anchor at (20.5/48, 10.5/48)
    raw[i, :4] = (4.0, -2.0, 48.0, 24.0)              # centre moved by (4, -2) px, 48x24 px
    raw[i, 4:6] = (-10.0, 0.0)                        # first keypoint 10 px left of the anchor
    scores[i] = 3.0
    boxes, points, s = decode_blazeface(raw[None], scores[None, :, None], a, 192)
    cx, cy = 20.5 / 48 + 4 / 192, 10.5 / 48 - 2 / 192
    np.testing.assert_allclose(boxes[i], [cx - 24 / 192, cy - 12 / 192, cx + 24 / 192, cy + 12 / 192], atol=1e-6)
    np.testing.assert_allclose(points[i, 0], [20.5 / 48 - 10 / 192, 10.5 / 48], atol=1e-6)
    assert s[i] == pytest.approx(1 / (1 + np.exp(-3))) and s.max() == s[i]


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    points = np.zeros((4, 6, 2), np.float32)
    points[1] = 10
    scores = np.array([0.9, 0.6, 0.7, 0.2])           # the last is under the threshold
    out = weighted_nms(boxes, points, scores, 0.5, 0.3)
    assert [round(s, 2) for _, _, s in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0][0], [0.6 / 1.5, 0, 10 + 0.6 / 1.5, 10], atol=1e-6)  # score-weighted
    np.testing.assert_allclose(out[0][1][0], [4, 4], atol=1e-6)
    np.testing.assert_allclose(out[1][0], boxes[2])


# -- real faces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("angle", [-30, 30])
def test_a_rolled_face_is_found_with_its_eyes(bf, name, angle):
    """Rolled 30 degrees about the face (Haar finds neither, docs/benchmarks.md): one face, its box
    where the upright box went, its eyes where the upright eyes went."""
    gray = PHOTOS[name]
    up, = bf.detect_faces(gray)
    assert abs(up.roll) < 6  # both photos show upright heads
    rolled, m = _rolled(gray, tuple(_centre(up.box)), angle)
    faces = bf.detect_faces(rolled)
    assert len(faces) == 1, faces
    f = faces[0]
    side = up.box[2]
    assert np.linalg.norm(_centre(f.box) - _centre(up.box)) < 0.1 * side  # rolled about that centre
    assert 0.85 < f.box[2] / side < 1.2
    eyes = np.linalg.norm(np.subtract(up.right_eye, up.left_eye))
    for got, want in ((f.left_eye, up.left_eye), (f.right_eye, up.right_eye)):
        assert np.linalg.norm(np.subtract(got, m @ (*want, 1.0))) < 0.15 * eyes
    assert f.roll == pytest.approx(up.roll - angle, abs=5)  # the eye line turned with the head
    assert f.box == tuple(bf.detect(rolled)[0])          # detect: the same, as boxes


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("width", [None, 320, 1600])
def test_upright_boxes_are_framed_like_the_cascades(bf, name, width):
    """BOX_SCALE / BOX_RAISE: on the shipped upright faces BlazeFace's box is the Haar cascade's (what
    crop_face's margin was set for), as shipped, at the page's 320 px and in a large still."""
    from fer_core.faces import FaceDetector
    gray = PHOTOS[name]
    if width:
        gray = cv2.resize(gray, (width, round(gray.shape[0] * width / gray.shape[1])), interpolation=cv2.INTER_AREA)
    haar, = FaceDetector().detect(gray)
    blaze, = bf.detect(gray)
    assert np.linalg.norm(_centre(blaze) - _centre(haar)) < 0.08 * haar[2], (blaze, haar)
    assert 0.85 < blaze[2] / haar[2] < 1.15, (blaze, haar)


def test_grey_and_colour_frames_give_the_same_face(bf, astronaut_bgr):
    grey, colour = bf.detect_faces(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)), bf.detect_faces(astronaut_bgr)
    assert len(grey) == len(colour) == 1
    assert np.abs(np.subtract(grey[0].box, colour[0].box)).max() <= 0.05 * grey[0].box[2]


@pytest.mark.parametrize("picture", ["flat", "coffee", "rocket"])
def test_no_face_where_there_is_none(bf, picture):
    from skimage import data
    img = np.full((240, 320), 128, np.uint8) if picture == "flat" else getattr(data, picture)()
    boxes, crops = find_faces(img, bf)
    assert boxes == [] and crops.shape == (0, 48, 48)


@pytest.mark.parametrize("img", [np.zeros((10, 10, 2), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros(100, np.uint8), np.zeros((10, 10), np.float32), np.zeros((0, 10), np.uint8)])
def test_wrong_input_shapes_raise_valueerror(bf, img):
    with pytest.raises(ValueError, match=r"image|\(0, 10\)"):
        bf.detect(img)


def test_a_wide_still_is_also_searched_in_tiles(bf, astronaut_bgr):
    """Two faces side by side in a 640x320 still (the right one 49 px): letterboxed whole, the model
    sees the small one at 15 px and misses it; the square tiles find it."""
    a = cv2.resize(astronaut_bgr, (320, 320))
    b = np.full_like(a, 120)
    b[40:280, 40:280] = cv2.resize(astronaut_bgr, (240, 240))
    frame = cv2.cvtColor(np.hstack([a, b]), cv2.COLOR_BGR2GRAY)
    assert bf._tiles(320, 640) == [(0, 0, 320), (160, 0, 320), (320, 0, 320)]
    assert bf._tiles(180, 320) == [] and bf._tiles(240, 320) == []  # the page's frames: one call
    faces = bf.detect_faces(frame)
    assert len(faces) == 2 and faces[0].box[0] < 320 <= faces[1].box[0], faces
    assert len(BlazeFaceDetector(tile_above=0).detect_faces(frame)) == 1
    # bounded: no tiles on slivers or past 4:1 (a hostile frame must not cost hundreds of calls)
    assert bf._tiles(70, 30000) == [] and bf._tiles(20, 60) == [] and len(bf._tiles(100, 400)) == 5
    with pytest.raises(ValueError, match="0.5"):
        BlazeFaceDetector(tile_above=0.5)


def test_noise_costs_a_bounded_number_of_model_calls(monkeypatch):
    """A frame of noise with a low score threshold fires many anchors: at most max_faces of them get
    the second look (one model call each), and at most max_faces come back."""
    noisy = BlazeFaceDetector(min_score=0.01, max_faces=3, min_size=0)
    calls = []
    real = noisy._run
    monkeypatch.setattr(noisy, "_run", lambda img, net=None: calls.append(1) or real(img, net))
    img = np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)
    assert len(real(img)) > 3  # many candidates
    faces = noisy.detect_faces(img)
    assert len(faces) <= 3 and len(calls) <= 1 + 3


def test_near_search_follows_a_rolled_face(bf):
    gray = PHOTOS["astronaut"]
    up, = bf.detect_faces(gray)
    rolled, _ = _rolled(gray, tuple(_centre(up.box)), 30)
    near = bf.detect_near_faces(rolled, up.box)
    assert len(near) == 1 and np.linalg.norm(_centre(near[0].box) - _centre(up.box)) < 0.1 * up.box[2]
    assert near[0].roll == pytest.approx(up.roll - 30, abs=5)
    assert bf.detect_near(rolled, (0, 0, 40, 40)) == []  # nothing in the corner
    with pytest.raises(ValueError, match="-1"):
        bf.detect_near(rolled, up.box, search=-1)


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("angle", [0, -30, 30])
def test_the_short_range_near_search_holds_the_whole_frame_box(bf, name, angle):
    """The short-range model's box is calibrated to the full-range one's (fer_core.faces.NEAR_BOX):
    a still face followed from its whole-frame find overlaps it by the tracker's hold_iou (0.85),
    so its box and crop stay put when the whole-frame search comes round."""
    from fer_core.track import iou
    gray = PHOTOS[name]
    up, = bf.detect_faces(gray)
    frame, _ = _rolled(gray, tuple(_centre(up.box)), angle)
    found, = bf.detect_faces(frame)
    near, = bf.detect_near_faces(frame, found)
    assert iou(near.box, found.box) >= 0.85, (near.box, found.box)
    # the head moved 10 % of its side to the right: the box and the carried eyes follow it
    dx = round(0.1 * found.box[2])
    moved, = bf.detect_near_faces(np.roll(frame, dx, axis=1), found)
    assert abs(_centre(moved.box)[0] - _centre(found.box)[0] - dx) < 0.05 * found.box[2]
    for eye, before in ((moved.left_eye, found.left_eye), (moved.right_eye, found.right_eye)):
        assert abs(eye[0] - before[0] - dx) < 0.05 * found.box[2] and abs(eye[1] - before[1]) < 0.05 * found.box[2]


def test_a_followed_face_costs_one_model_call(bf, monkeypatch):
    """The tracker passes the last Face: its region is turned by the last roll, so one call sees the
    head upright (box and eyes as the whole-frame find's levelled look); a bare box costs two."""
    gray = PHOTOS["grace_hopper"]
    up, = bf.detect_faces(gray)
    rolled, _ = _rolled(gray, tuple(_centre(up.box)), -30)
    last, = bf.detect_faces(rolled)
    calls = []
    real = bf._run
    monkeypatch.setattr(bf, "_run", lambda img, net=None: calls.append((net or bf._net).side) or real(img, net))
    followed, = bf.detect_near_faces(rolled, last)
    assert calls == [128]  # one call, of the short-range model
    assert np.linalg.norm(_centre(followed.box) - _centre(last.box)) < 0.05 * last.box[2]
    assert 0.9 < followed.box[2] / last.box[2] < 1.1
    bf.detect_near_faces(rolled, last.box)
    assert len(calls) == 3


# -- levelled crops ----------------------------------------------------------------------------------

def test_align_crop_levels_a_known_tilt():
    """A synthetic frame: a bright bar along a 30-degree eye line; levelled, the bar is horizontal."""
    img = np.zeros((200, 200), np.uint8)
    cv2.line(img, (60, 100 + int(40 * np.tan(np.radians(30)))), (140, 100 - int(40 * np.tan(np.radians(30)))), 255, 5)
    left, right = (60.0, 100 + 40 * np.tan(np.radians(30))), (140.0, 100 - 40 * np.tan(np.radians(30)))
    assert Face((50, 50, 100, 100), left, right).roll == pytest.approx(-30)
    c = align_crop(img, (50, 50, 100, 100), left, right, margin=0.0, size=100)
    rows = c.mean(axis=1)
    assert rows.argmax() in (49, 50) and rows.max() > 150  # one bright row through the centre
    np.testing.assert_array_equal(align_crop(img, (50, 50, 100, 100), None, None), crop_face(img, (50, 50, 100, 100)))


@pytest.fixture(scope="module")
def shipped():
    from fer_core.predict import Predictor
    return Predictor(runtime="auto")


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("angle", [-30, 30])
def test_a_rolled_faces_levelled_crop_is_the_upright_one(bf, shipped, name, angle):
    """The crop of a head rolled 30 degrees, levelled on the detected eyes, looks like the upright
    head's crop (unlevelled, it does not) and gets the upright crop's label from the shipped ensemble."""
    gray = PHOTOS[name]
    up, = bf.detect_faces(gray)
    rolled, _ = _rolled(gray, tuple(_centre(up.box)), angle)
    f, = bf.detect_faces(rolled)
    upright, levelled, unlevelled = (align_crop(gray, up.box, up.left_eye, up.right_eye),
                                     align_crop(rolled, f.box, f.left_eye, f.right_eye), crop_face(rolled, f.box))
    corr = lambda a, b: np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]  # noqa: E731
    # measured 0.86-0.89 levelled, 0.07-0.37 unlevelled (the upright crop's own eye line is also detected)
    assert corr(levelled, upright) > 0.8
    assert corr(levelled, upright) > corr(unlevelled, upright) + 0.3
    probs = shipped.predict_faces(np.stack([upright, levelled]))[0]
    assert probs[0].argmax() == probs[1].argmax()
    _, crops = find_faces(rolled, bf)
    np.testing.assert_array_equal(crops[0], levelled)  # find_faces levels too


# -- served ------------------------------------------------------------------------------------------

def test_the_worker_levels_tracked_faces(tiny_models):
    """The worker's batch step with BlazeFace and per-client trackers built as the worker builds them
    (Faces, not boxes): a rolled head gets the levelled crop's answer at the full search and while
    it is followed by near searches."""
    from fer_core.faces import decode_image
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from fer_core.track import FaceTracker
    from webapp.worker import answer_batch

    p = Predictor(tiny_models, detector="blazeface")
    assert isinstance(p.detector, BlazeFaceDetector) and Predictor(tiny_models, detector="haar").detector.__class__.__name__ == "FaceDetector"
    gray = cv2.resize(PHOTOS["astronaut"], (320, 320), interpolation=cv2.INTER_AREA)
    up, = p.detector.detect_faces(gray)
    rolled, _ = _rolled(gray, tuple(_centre(up.box)), 30)
    jpeg = cv2.imencode(".jpg", rolled, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    boxes, crops = find_faces(decode_image(jpeg, grey=True), p.detector)
    want = p.predict_faces(crops)[0][0]
    det = p.detector
    made, seen = [], []
    pipe = FramePipeline(p, track_still=0.0, spread_views=False, prep_chunks=0)
    pipe.trackers.make = lambda: made.append(FaceTracker(det.detect_faces, det.detect_near_faces)) or made[-1]
    real = p.view_probs
    p.view_probs = lambda c, picks, views=None: seen.append(c[0]) or real(c, picks, views)
    unlevelled = crop_face(decode_image(jpeg, grey=True), boxes[0])
    for _ in range(3):
        out, = answer_batch(pipe, [1], [jpeg], clients=["a"])
        assert len(out["faces"]) == 1
        np.testing.assert_allclose(list(out["faces"][0]["probabilities"].values()), want, atol=0.05)
    corr = lambda a, b: np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]  # noqa: E731
    np.testing.assert_array_equal(seen[0], crops[0])  # the full search: find_faces' levelled crop
    for c in seen[1:]:                                # followed: levelled on each frame's eyes
        assert corr(c, crops[0]) > 0.85 and corr(c, crops[0]) > corr(unlevelled, crops[0]) + 0.3, \
            (corr(c, crops[0]), corr(unlevelled, crops[0]))
    assert (made[0].full_searches, made[0].near_searches) == (1, 2)
    assert out["faces"][0]["box"] == list(boxes[0])

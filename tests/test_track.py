"""The face tracker: driven by synthetic detectors whose every answer is known (like test_ensemble),
then once with OpenCV's real detector on a moving photo."""
import numpy as np
import pytest

from fer_core.track import FaceTracker, Trackers, iou


class Scene:
    """A 'frame' is the list of true face boxes; the fake detectors see exactly those and count calls."""

    def __init__(self, jitter=None):
        self.full = self.near = 0
        self.jitter = jitter  # per call, an offset added to every box found (a detector's pixel steps)

    def _seen(self, boxes):
        if self.jitter is None:
            return [tuple(b) for b in boxes]
        dx = self.jitter[(self.full + self.near) % len(self.jitter)]
        return [(x + dx, y + dx, w, h) for x, y, w, h in boxes]

    def detect(self, frame):
        self.full += 1
        return self._seen(frame)

    def detect_near(self, frame, box, search=0.5):
        self.near += 1
        x, y, w, h = box
        region = (x - search * w, y - search * h, w * (1 + 2 * search), h * (1 + 2 * search))
        # a face is found near the box only if it lies inside the searched region
        return self._seen([b for b in frame if iou(region, b) > 0 and
                           region[0] <= b[0] and b[0] + b[2] <= region[0] + region[2] and
                           region[1] <= b[1] and b[1] + b[3] <= region[1] + region[3]])


def tracker(scene, **kw):
    kw.setdefault("hold_iou", 1.0)  # boxes held only when found unchanged, unless a test asks
    return FaceTracker(scene.detect, scene.detect_near, **kw)


def test_iou_by_hand():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0


def test_a_moving_face_is_followed_with_one_full_search_every_n_frames():
    s = Scene()
    t = tracker(s, redetect_every=5)
    path = [(100 + 4 * k, 60 + 2 * k, 80, 80) for k in range(20)]
    for k, box in enumerate(path):
        assert t.update([box]) == [box], k
    assert s.full == 4 and s.near == 16  # frames 1, 6, 11, 16 searched whole; the rest near the face
    assert t.full_searches == 4 and t.near_searches == 16


def test_a_face_that_leaves_is_gone_in_that_same_frame():
    s = Scene()
    t = tracker(s, redetect_every=10)
    for _ in range(3):
        assert t.update([(100, 60, 80, 80)]) == [(100, 60, 80, 80)]
    assert s.full == 1
    assert t.update([]) == []  # not near its box: a full search at once, which finds nobody
    assert s.full == 2
    assert t.update([]) == [] and s.full == 3  # no face known: every frame is searched whole


def test_a_second_face_that_enters_is_found_at_the_next_full_search():
    s = Scene()
    t = tracker(s, redetect_every=4)
    a, b = (40, 60, 80, 80), (200, 50, 60, 60)
    assert t.update([a]) == [a]                 # frame 1: full
    assert t.update([a, b]) == [a]              # frame 2: b enters, only a's surroundings are searched
    assert t.update([a, b]) == [a]              # frame 3
    assert t.update([a, b]) == [a]              # frame 4
    assert t.update([a, b]) == [a, b]           # frame 5: the full search finds b (largest first)
    assert t.update([a, b]) == [a, b] and s.full == 2  # frame 6: both followed near their boxes
    assert s.near == 3 + 2


def test_each_face_keeps_its_id_until_it_is_lost():
    s = Scene()
    t = tracker(s, redetect_every=4)
    a, b = (40, 60, 80, 80), (200, 50, 60, 60)
    assert t.tracks() == []
    assert t.update([a]) == [a] and t.tracks() == [(0, a)]
    moved = [(40 + 3 * k, 60, 80, 80) for k in range(1, 6)]
    for m in moved:                              # a moves (near searches and full ones): still face 0
        t.update([m, b])
    assert t.tracks() == [(0, moved[-1]), (1, b)]  # b, found at the full search, is face 1, listed after a
    t.update([b])                                # a leaves ...
    assert t.tracks() == [(1, b)]
    for _ in range(3):                           # ... and comes back: not searched for yet
        assert t.update([moved[-1], b]) == [b]
    t.update([moved[-1], b])                     # the next full search finds it: a new face, 2
    assert t.tracks() == [(2, moved[-1]), (1, b)]


def test_a_face_that_jumps_away_is_found_again_in_the_same_frame():
    s = Scene()
    t = tracker(s, redetect_every=50)
    t.update([(10, 10, 50, 50)])
    assert t.update([(250, 150, 50, 50)]) == [(250, 150, 50, 50)]
    assert s.full == 2


def test_one_of_two_faces_leaving_keeps_the_other():
    s = Scene()
    t = tracker(s, redetect_every=50)
    a, b = (40, 60, 80, 80), (200, 50, 60, 60)
    t.update([a, b])
    assert t.update([a]) == [a]
    assert t.update([a]) == [a] and s.full == 2


def test_a_trembling_box_is_held_and_a_real_move_followed():
    jitter = [0, 2, 0, 2, 0, 2, 0, 2, 0, 2]     # the detector's box steps 2 px back and forth
    raw, s = Scene(jitter), Scene(jitter)
    t_raw, t = tracker(raw, redetect_every=3), tracker(s, redetect_every=3, hold_iou=0.8)
    still = [(100, 60, 80, 80)]
    xs_raw = [t_raw.update(still)[0][0] for _ in range(10)]
    xs = [t.update(still)[0][0] for _ in range(10)]
    assert np.ptp(xs_raw) == 2 and np.ptp(xs) == 0  # 2 px of 80: overlap 0.91, held (full searches too)
    moved = t.update([(130, 60, 80, 80)])[0]    # 30 px: overlap 0.45, taken at once
    assert moved[0] in (130, 132)


def test_only_the_largest_faces_a_caller_serves_are_followed():
    """max_faces: a whole-frame search keeps its largest max_faces detections (they come largest
    first), so a face that would not be served costs no near search on the frames between."""
    s = Scene()
    t = tracker(s, redetect_every=4, max_faces=1)
    a, b = (40, 60, 80, 80), (200, 50, 60, 60)
    for _ in range(4):
        assert t.update([a, b]) == [a]
    assert s.full == 1 and s.near == 3  # one near search a frame: b is not followed
    assert tracker(Scene(), redetect_every=4).update([a, b]) == [a, b]  # None: every face
    with pytest.raises(ValueError, match="got 0"):
        tracker(Scene(), max_faces=0)


def test_bad_arguments_name_the_value():
    s = Scene()
    with pytest.raises(ValueError, match="got 0"):
        FaceTracker(s.detect, s.detect_near, redetect_every=0)
    with pytest.raises(ValueError, match="got 0.2, 1.5"):
        FaceTracker(s.detect, s.detect_near, hold_iou=1.5)
    with pytest.raises(ValueError, match="got 0, 1"):
        Trackers(lambda: None, idle_s=0, max_streams=1)
    with pytest.raises(ValueError, match="still must be >= 0 grey levels, got -1"):
        FaceTracker(s.detect, s.detect_near, still=-1)


class Shot(np.ndarray):
    """A grey frame that also carries its true face boxes (``.faces``) for ShotScene's detectors."""


def shot(boxes, rng, noise=2.0, size=(240, 320)):
    """Faces drawn as textured squares on a grey background, with webcam-like noise."""
    img = np.full(size, 90.0)
    for x, y, w, h in boxes:
        yy, xx = np.mgrid[0:h, 0:w]
        img[y:y + h, x:x + w] = 120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = np.clip(img + rng.normal(0, noise, size), 0, 255).astype(np.uint8).view(Shot)
    img.faces = [tuple(b) for b in boxes]
    return img


class ShotScene(Scene):
    def detect(self, frame):
        return super().detect(frame.faces)

    def detect_near(self, frame, box, search=0.5):
        return super().detect_near(frame.faces, box, search)


def test_still_faces_and_frames_are_not_searched_until_something_moves():
    """``still``: noise alone moves no block mean by 4 levels, so a still face keeps its box without
    a near search and the due whole-frame search waits; a face that moves is searched in that frame,
    a face that enters is found at the next due full search, one that leaves is lost at once."""
    rng = np.random.default_rng(0)
    s = ShotScene()
    t = tracker(s, redetect_every=4, still=4.0)
    a, b = (60, 50, 64, 64), (200, 120, 48, 48)
    for _ in range(10):
        assert t.update(shot([a], rng)) == [a]
    assert (s.full, s.near) == (1, 0) and (t.full_skipped, t.near_skipped) == (6, 9)  # due from frame 5 on
    moved = (63, 50, 64, 64)
    assert t.update(shot([moved], rng)) == [moved]  # the due full search: the frame changed
    assert (s.full, s.near) == (2, 0)
    assert t.update(shot([moved], rng)) == [moved] and (s.full, s.near) == (2, 0)  # still again
    moved2 = (66, 50, 64, 64)
    assert t.update(shot([moved2], rng)) == [moved2]  # 3 px: its blocks changed, so it was searched near
    assert (s.full, s.near) == (2, 1)
    assert t.update(shot([moved2], rng)) == [moved2] and (s.full, s.near) == (2, 1)
    assert t.update(shot([moved2, b], rng)) == [moved2, b]  # the next due full search finds who entered
    assert (s.full, s.near) == (3, 1)
    assert t.update(shot([b], rng)) == [b]  # the first face left: its region changed, lost, full search
    assert (s.full, s.near) == (4, 2) and len(t.kept_for(dict)) == 1
    # without ``still`` every frame is searched, as before
    s2 = ShotScene()
    t2 = tracker(s2, redetect_every=4)
    for _ in range(10):
        t2.update(shot([a], rng))
    assert (s2.full, s2.near) == (3, 7) and (t2.full_skipped, t2.near_skipped) == (0, 0)


def test_a_still_scene_is_searched_whole_again_at_the_latest_every_few_periods():
    """A face the first whole-frame search missed in a scene that never moves is looked for again
    after ``put_off`` frames; a frame of another size is never 'unchanged'. By default ``put_off``
    is 4 periods and a random part of one, so that streams started together do not all search at once."""
    from fer_core.track import STILL_PUT_OFF

    rng = np.random.default_rng(1)
    a = (60, 50, 64, 64)
    class Shy(ShotScene):  # its first whole-frame search misses the face
        def detect(self, frame):
            self.full += 1
            return [] if self.full == 1 else list(frame.faces)

    s = Shy()
    t = tracker(s, redetect_every=2, still=4.0, put_off=STILL_PUT_OFF * 2)
    for k in range(STILL_PUT_OFF * 2 + 1):
        t.update(shot([a], rng))
        if k < STILL_PUT_OFF * 2 - 1:
            assert t.current() == [], k  # frame 1's search missed her; the still frames put the next off
    assert t.current() == [a] and s.full == 2
    s2 = ShotScene()
    t2 = tracker(s2, redetect_every=2, still=4.0)
    t2.update(shot([a], rng))
    t2.update(shot([a], rng, size=(240, 320)))
    assert s2.full == 1
    t2.update(shot([a], rng, size=(240, 400)))  # due, and the frame is another size: searched
    assert s2.full == 2
    offs = {tracker(ShotScene(), redetect_every=8, still=4.0).put_off for _ in range(200)}
    assert offs == set(range(32, 40))  # 4 periods of 8, plus 0..7 frames
    with pytest.raises(ValueError, match=r"put_off must be an int >= redetect_every \(8\), got 7"):
        tracker(ShotScene(), redetect_every=8, put_off=7)


def test_block_means_by_hand():
    from fer_core.track import block_means
    f = (2 * np.arange(16)).astype(np.uint8).reshape(4, 4)  # even sums: whole-level means, as block_means rounds
    np.testing.assert_allclose(block_means(f, (0, 0, 4, 4), 2), [[5, 9], [21, 25]])
    np.testing.assert_allclose(block_means(f, (2, 2, 9, 9), 2), [[20, 22], [28, 30]])  # clipped to the frame
    assert block_means(f, (3, 3, 4, 4), 2) is None  # one pixel: too small to compare
    colour = np.dstack([f, f // 2, f])
    assert block_means(colour, (0, 0, 4, 4), 2).shape == (2, 2, 3)


def test_trackers_keep_one_per_stream_and_forget_idle_and_excess_ones():
    made = []

    def make():
        made.append(object())
        return made[-1]

    ts = Trackers(make, idle_s=10, max_streams=2)
    a = ts.get("a", now=0)
    assert ts.get("a", now=5) is a and len(made) == 1
    b = ts.get("b", now=6)
    assert b is not a and len(ts) == 2
    ts.get("c", now=7)                           # over max_streams: the least recently seen ('a') goes
    assert len(ts) == 2 and ts.get("b", now=8) is b
    assert ts.get("a", now=9) is not a           # 'a' was forgotten: a fresh tracker
    assert len(ts) == 2
    ts.get("d", now=30)                          # everything else idle for more than 10 s
    assert len(ts) == 1


# -- with OpenCV's detector ---------------------------------------------------------------------------

def _scene(face, positions, size=(240, 320)):
    frame = np.full(size, 110, np.uint8)
    for x, y in positions:
        h, w = face.shape
        frame[y:y + h, x:x + w] = face
    return frame


@pytest.fixture(scope="module")
def face_patch():
    import cv2
    from skimage import data
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey[20:260, 110:350], (120, 120), interpolation=cv2.INTER_AREA)  # her head, 120 px


def test_real_detector_follows_a_moving_face_loses_it_and_finds_a_second(face_patch):
    from fer_core.faces import FaceDetector
    d = FaceDetector()
    t = FaceTracker(d.detect, d.detect_near, redetect_every=6)
    centres = []
    for k in range(10):  # moves right 6 px a frame
        boxes = t.update(_scene(face_patch, [(20 + 6 * k, 40)]))
        assert len(boxes) == 1, (k, boxes)
        x, y, w, h = boxes[0]
        centres.append(x + w / 2)
    assert t.near_searches >= 7                   # most frames were searched only near the face
    assert np.all(np.diff(centres) >= 0)          # and the box went along with it (held while it overlaps)
    assert abs(centres[-1] - centres[0] - 54) < 20
    assert t.update(_scene(face_patch, [])) == []  # it left
    found = []
    for k in range(7):                            # a face on the left, then a second enters on the right
        found.append(len(t.update(_scene(face_patch, [(10, 40)] + ([(180, 60)] if k >= 1 else [])))))
    assert found == [1, 1, 1, 1, 1, 1, 2]          # found at the full search 6 frames after the first


def test_worker_follows_each_clients_faces(tiny_models, astronaut_jpeg):
    """The worker's batch step with per-client trackers: the same faces as a full search, while each
    client's later frames are searched only near its face; a frame without a client is searched whole."""
    from fer_core.pipeline import FramePipeline
    from fer_core.predict import Predictor
    from webapp.worker import answer_batch
    p = Predictor(tiny_models)
    made = []

    def make():
        made.append(FaceTracker(p.detector.detect, p.detector.detect_near, redetect_every=8))
        return made[-1]

    pipe = FramePipeline(p, track_still=0.0, prep_chunks=0)
    pipe.trackers.make = make  # counted trackers, on plain boxes
    ts = pipe.trackers
    plain = answer_batch(FramePipeline(p, track_every=0, prep_chunks=0), [1], [astronaut_jpeg])
    for rnd in range(3):
        out = answer_batch(pipe, [1, 2, 3], [astronaut_jpeg] * 3, clients=["a", "b", None])
        assert [len(r["faces"]) for r in out] == [1, 1, 1]
        for r in out:
            assert r["faces"][0]["label"] == plain[0]["faces"][0]["label"]
            assert np.abs(np.subtract(r["faces"][0]["box"], plain[0]["faces"][0]["box"])).max() <= 4
    assert len(made) == 2 and len(ts) == 2
    assert [(t.full_searches, t.near_searches) for t in made] == [(1, 2), (1, 2)]


def test_detections_with_eyes_keep_the_held_box_and_give_this_frames_eyes():
    """Searches that return Faces (BlazeFace): update() still returns boxes; current_faces() gives each
    face on its held box with the eyes of the latest search, so a head that rolls in place, its box
    still, is levelled by this frame's eyes; eyes that move by less than hold_roll (a still face's
    keypoint noise) are held with the box, so the same frame gets the same crop."""
    from fer_core.faces import Face

    frames = [((100, 100, 80, 80), (120, 130), (160, 130)),       # upright
              ((101, 100, 80, 80), (120, 140), (160, 120)),       # rolled in place: box held
              ((130, 100, 80, 80), (150, 130), (190, 130))]       # moved: box followed
    faces = lambda f: [Face(*f)]  # noqa: E731
    t = FaceTracker(lambda fr: faces(fr), lambda fr, box: faces(fr), redetect_every=8, hold_iou=0.9)
    out = [(t.update(fr), t.current_faces()) for fr in frames]
    assert [o[0] for o in out] == [[(100, 100, 80, 80)], [(100, 100, 80, 80)], [(130, 100, 80, 80)]]
    assert [f.box for _, (f,) in out] == [b for b, in (o[0] for o in out)]
    assert [(f.left_eye, f.right_eye) for _, (f,) in out] == [fr[1:] for fr in frames]
    assert out[1][1][0].roll == pytest.approx(-26.57, abs=0.01)
    assert (t.full_searches, t.near_searches) == (1, 2)
    t.update(((130, 100, 80, 80), (150, 131), (190, 129)))  # eye noise (2.9 degrees), box held: eyes held
    assert (t.current_faces()[0].left_eye, t.current_faces()[0].right_eye) == ((150, 130), (190, 130))
    t.update(((130, 100, 80, 80), (150, 132), (190, 128)))  # 5.7 degrees: this frame's eyes
    assert t.current_faces()[0].left_eye == (150, 132)
    with pytest.raises(ValueError, match="-1"):
        FaceTracker(t.detect, t.detect_near, hold_roll=-1)
    # plain boxes from the searches: current_faces() is current()
    s = Scene()
    b = tracker(s)
    b.update([(10, 10, 50, 50)])
    assert b.current_faces() == b.current() == [(10, 10, 50, 50)]

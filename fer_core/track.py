"""Following faces from frame to frame instead of searching every whole frame for them.

A webcam's next frame almost always shows its faces where the last one did. ``FaceTracker`` keeps
the last boxes of one video stream and, for each new frame, searches only near each of them (a few
sizes of a small region: ``FaceDetector.detect_near``; BlazeFace: the region through the model). The
whole frame is searched again

* every ``redetect_every`` frames, so that a face that enters is found within that many frames
  (with ``still``, below: within that many frames of the frame changing, and at the latest every
  ``put_off`` frames);
* at once, in the same frame, when a face is not found near its last box (it moved fast, turned
  away or left), so that a lost face costs one full search, never a wrong box.

With ``still`` (grey levels, 0: off), nothing is searched where nothing moved: a followed face
whose region's 8x8 block means all changed by less than ``still`` since it was last searched keeps
its box and eyes, and a due whole-frame search is put off while the frame's 16x16 block means all
changed by less than that since the last one (a face that enters, or one that leaves, changes its
blocks by tens of levels; webcam noise moves a block mean by a level or two: bench/bench_track.py),
though never beyond ``put_off`` frames: a face one search missed in a scene that stays still is
looked for again. By default ``put_off`` is STILL_PUT_OFF x ``redetect_every`` plus a random part of a
period, so that the streams of a class that started together do not all search whole frames in
the same batch (they raised bench_load's p99 when they did, docs/benchmarks.md).

The tracker itself is plain numpy (and OpenCV's resize for ``still``): the two searches are passed in, so tests can drive it with
synthetic detectors. Boxes are (x, y, w, h) in the frame's pixels, largest first, as
``FaceDetector.detect`` returns them. The searches may instead return detections that carry their
box as ``.box`` (``fer_core.faces.Face``, with the eyes): ``update`` still returns boxes, and
``current_faces`` gives each face's latest detection on its held box (the crop is levelled on
this frame's eyes even while the box stands still). Each followed face keeps an id (``tracks()``)
from the frame it was first found in until it is lost, so a video's rows can tell its faces apart
(fer_core/video.py).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

Box = tuple[int, int, int, int]
REDETECT_EVERY = 8  # a new face is found within 8 frames (1.6 s at the page's 5 frames a second)
# A webcam's noise moves an 8x8 block's mean by 1-3 grey levels, a quarter-pixel shift of the face
# by 5 (bench/bench_track.py): under 4 levels a region counts as unmoved (``still``).
STILL_LEVELS = 4.0
STILL_PUT_OFF = 4   # ``still`` puts a due whole-frame search off by at most this many times redetect_every


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def block_means(frame, box, n: int):
    """The mean grey level of each of n x n blocks of ``box``'s region of ``frame`` (float32 (n, n),
    or (n, n, 3) for a colour frame; rounded to whole levels: OpenCV's area resize, 8x faster than
    summing in numpy), or None where the region is under n px a side."""
    import cv2
    x, y, w, h = (int(round(v)) for v in box)
    region = np.asarray(frame)[max(0, y):max(0, y + h), max(0, x):max(0, x + w)]
    if region.shape[0] < n or region.shape[1] < n:
        return None
    return cv2.resize(np.ascontiguousarray(region), (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)


def box_of(d) -> tuple:
    """A detection's (x, y, w, h): its ``.box`` (fer_core.faces.Face), or the detection itself."""
    return tuple(getattr(d, "box", d))


def _match(prev: Sequence, found: Sequence, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (i in prev, j in found), best overlap first, each at least ``min_iou``."""
    pairs = sorted(((iou(p, f), i, j) for i, p in enumerate(prev) for j, f in enumerate(found)), reverse=True)
    used_i, used_j, out = set(), set(), []
    for o, i, j in pairs:
        if o < min_iou:
            break
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out.append((i, j))
    return out


class FaceTracker:
    """The faces of one video stream. ``update(frame)`` returns this frame's boxes.

    ``detect(frame)`` searches the whole frame; ``detect_near(frame, box)`` searches near ``box``.
    A followed box stays where it is while the face is found overlapping it by at least ``hold_iou``
    (intersection over union): a still face's box does not tremble with the detector's pixel and
    scale steps (nor differ between the two searches), and the same frame gets the same answer; a
    face that moves further is followed at once. A face is the same one from frame to frame when
    its boxes overlap by at least ``min_iou``."""

    def __init__(self, detect: Callable, detect_near: Callable, redetect_every: int = REDETECT_EVERY,
                 hold_iou: float = 0.85, min_iou: float = 0.2, hold_roll: float = 3.0,
                 max_faces: int | None = None, still: float = 0.0, put_off: int | None = None):
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be >= 1, got {redetect_every!r}")
        if not 0 < min_iou <= hold_iou <= 1:
            raise ValueError(f"need 0 < min_iou <= hold_iou <= 1, got {min_iou!r}, {hold_iou!r}")
        if hold_roll < 0:
            raise ValueError(f"hold_roll must be >= 0, got {hold_roll!r}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {max_faces!r}")
        if not still >= 0:
            raise ValueError(f"still must be >= 0 grey levels, got {still!r}")
        if put_off is None:
            import random
            put_off = STILL_PUT_OFF * redetect_every + random.randrange(redetect_every)
        if type(put_off) is not int or put_off < redetect_every:
            raise ValueError(f"put_off must be an int >= redetect_every ({redetect_every}), got {put_off!r}")
        self.still, self.put_off = still, put_off
        # the largest faces a whole-frame search keeps (its detections come largest first): a face its
        # caller would not serve costs a near search on every frame between full searches for nothing
        self.max_faces = max_faces
        # detections with eyes (``.roll``): a held box keeps its eyes too while the roll moves less than
        # this many degrees, so a still face's levelled crop does not tremble with the eyes' pixel noise
        self.hold_roll = hold_roll
        self.detect, self.detect_near = detect, detect_near
        self.redetect_every, self.hold_iou, self.min_iou = redetect_every, hold_iou, min_iou
        self.boxes: list[tuple] = []
        self.found: list = []               # each box's latest detection (a box, or a Face with eyes)
        self.ids: list[int] = []            # self.boxes[i]'s face id: new ids for new faces, 0, 1, 2, ...
        self.kept: dict[int, object] = {}   # what a caller keeps for a followed face, by id, until it is lost
        self._looks: dict[int, np.ndarray] = {}  # ``still``: each face's block means when it was last searched
        self._frame_look = None             # ``still``: (frame shape, its block means) at the last full search
        self._next_id = 0
        self.since_full = 0                 # frames since the last full search
        self.full_searches = self.near_searches = self.frames = 0
        self.full_skipped = self.near_skipped = 0  # searches ``still`` put off: nothing had moved

    def _follow(self, old, new) -> tuple:
        return old if iou(old, new) >= self.hold_iou else tuple(new)

    @classmethod
    def for_detector(cls, detector, **kw) -> "FaceTracker":
        """A tracker on ``detector``'s searches that return faces (fer_core.faces: BlazeFace's carry the
        eyes, so each frame's crop can be levelled), as the server and the video mode follow faces."""
        return cls(detector.detect_faces, detector.detect_near_faces, **kw)

    def _latest(self, prev_box, held_box, old, new):
        """The detection to keep for a face: ``new``, or ``old`` while its box is held (``held_box``
        is still ``prev_box``) and the eye line has turned less than ``hold_roll`` (same frame,
        same crop)."""
        if old is not None and tuple(held_box) == tuple(prev_box) and hasattr(new, "roll") and hasattr(old, "roll") \
                and abs(new.roll - old.roll) < self.hold_roll:
            return old
        return new

    def _may_put_off(self, look) -> bool:
        """With ``still``: whether a due whole-frame search may wait, the frame (of the same size,
        block means ``look``) being as it was at the last one, which is less than ``put_off`` frames ago."""
        if self._frame_look is None or self.since_full + 1 >= self.put_off:
            return False
        return look[0] == self._frame_look[0] and not self._moved(look[1], self._frame_look[1])

    @staticmethod
    def _frame_means(frame) -> tuple:
        return frame.shape, block_means(frame, (0, 0, frame.shape[1], frame.shape[0]), 16)

    def _moved(self, look, before) -> bool:
        """Whether block means ``look`` differ from ``before`` by ``still`` or more anywhere (or
        cannot be compared)."""
        return look is None or before is None or look.shape != before.shape \
            or float(np.abs(look - before).max()) >= self.still

    def _full(self, frame, look=None) -> None:
        """The whole frame searched; ``look``: its ``_frame_means`` where the caller has them."""
        found = list(self.detect(frame))[:self.max_faces]
        boxes = [box_of(f) for f in found]
        self.full_searches += 1
        self.since_full = 0
        pairs = dict((j, i) for i, j in _match(self.boxes, boxes, self.min_iou))
        # what the whole-frame search finds is the truth; known faces that stayed put keep their box
        prev, prev_found = self.boxes, self.found
        self.boxes = [self._follow(prev[pairs[j]], f) if j in pairs else f for j, f in enumerate(boxes)]
        self.found = [self._latest(prev[pairs[j]], b, prev_found[pairs[j]], f) if j in pairs else f
                      for j, (b, f) in enumerate(zip(self.boxes, found))]
        self.ids = [self.ids[pairs[j]] if j in pairs else self._new_id() for j in range(len(found))]
        if self.still:
            self._frame_look = look if look is not None else self._frame_means(frame)
            self._looks = {i: block_means(frame, b, 8) for i, b in zip(self.ids, self.boxes)}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def update(self, frame) -> list[Box]:
        self.frames += 1
        due = not self.boxes or self.since_full + 1 >= self.redetect_every
        look = self._frame_means(frame) if due and self.still else None  # once: the put-off, then the search
        if due and look is not None and self._may_put_off(look):
            due = False  # the frame is as it was at the last full search: no face can have come or gone
            self.full_skipped += 1
        if due:
            self._full(frame, look)
        else:
            self.since_full += 1
            kept = []
            for b, last, fid in zip(self.boxes, self.found, self.ids):
                face_look = block_means(frame, b, 8) if self.still else None
                if self.still and not self._moved(face_look, self._looks.get(fid)):
                    kept.append((b, last, fid))  # its region did not move: its box and eyes stand
                    self.near_skipped += 1
                    continue
                self.near_searches += 1
                # a detection with eyes is passed whole, on its held box: BlazeFace turns the region by its roll
                found = list(self.detect_near(frame, self._held(b, last)))
                best = max(found, key=lambda f: iou(b, box_of(f)), default=None)
                if best is None or iou(b, box_of(best)) < self.min_iou:
                    self._full(frame)  # lost near its last place: look everywhere, in this same frame
                    break
                held = self._follow(b, box_of(best))
                kept.append((held, self._latest(b, held, last, best), fid))
                if self.still:  # the look at the box it now has (computed above if the box was held)
                    self._looks[fid] = face_look if tuple(held) == tuple(b) else block_means(frame, held, 8)
            else:
                # two boxes that followed onto the same face become one (the larger, found first)
                self.boxes, self.found, self.ids = [], [], []
                for b, f, fid in sorted(kept, key=lambda k: -k[0][2] * k[0][3]):
                    if all(iou(b, o) < 0.5 for o in self.boxes):
                        self.boxes.append(b)
                        self.found.append(f)
                        self.ids.append(fid)
        if self.kept.keys() - set(self.ids):
            self.kept = {i: n for i, n in self.kept.items() if i in self.ids}  # a lost face's go with it
        if self._looks.keys() - set(self.ids):
            self._looks = {i: v for i, v in self._looks.items() if i in self.ids}
        return self.current()

    @staticmethod
    def _held(box, detection):
        """``detection`` moved onto the held ``box`` (a Face), or the box itself (plain boxes)."""
        if dataclasses.is_dataclass(detection) and hasattr(detection, "box"):
            return dataclasses.replace(detection, box=tuple(box))
        return box

    def _order(self) -> list[int]:
        return sorted(range(len(self.boxes)), key=lambda i: -self.boxes[i][2] * self.boxes[i][3])

    def tracks(self) -> list[tuple[int, Box]]:
        """(face id, box) of this frame's faces, largest first (the order of ``current()``)."""
        return [(self.ids[i], tuple(int(round(v)) for v in self.boxes[i])) for i in self._order()]

    def current(self) -> list[Box]:
        return [tuple(int(round(v)) for v in self.boxes[i]) for i in self._order()]

    def kept_for(self, make: Callable[[], object]) -> list:
        """``current()``'s order: the object the caller keeps for each face, ``make()`` for a face
        without one, kept from then until the face is lost (fer_core/pipeline.py keeps its recent
        views there, fer_core/spread.py)."""
        out = []
        for i in self._order():
            if self.ids[i] not in self.kept:
                self.kept[self.ids[i]] = make()
            out.append(self.kept[self.ids[i]])
        return out

    def current_faces(self) -> list:
        """``current()``'s order: each face's latest detection, a ``Face`` moved onto its held
        (rounded) box with this frame's eyes, or the held box where the searches return boxes."""
        return [self._held(tuple(int(round(v)) for v in self.boxes[i]), self.found[i]) for i in self._order()]


class Trackers:
    """One ``FaceTracker`` per video stream (a client's key), forgotten after ``idle_s`` without a
    frame or beyond ``max_streams`` (the least recently seen first): a worker serving many clients
    keeps bounded state, and a client that reconnects simply starts with a full search."""

    def __init__(self, make: Callable[[], FaceTracker], idle_s: float = 30.0, max_streams: int = 1024):
        if idle_s <= 0 or max_streams < 1:
            raise ValueError(f"need idle_s > 0 and max_streams >= 1, got {idle_s!r}, {max_streams!r}")
        self.make, self.idle_s, self.max_streams = make, idle_s, max_streams
        self._streams: OrderedDict = OrderedDict()  # key -> (tracker, last seen)

    def get(self, key, now: float) -> FaceTracker:
        while self._streams:
            k, (_, seen) = next(iter(self._streams.items()))
            if now - seen <= self.idle_s and len(self._streams) < self.max_streams:
                break
            if k == key and now - seen <= self.idle_s:
                break
            del self._streams[k]
        t = self._streams.pop(key, (None, 0))[0] or self.make()
        self._streams[key] = (t, now)
        return t

    def __len__(self) -> int:
        return len(self._streams)

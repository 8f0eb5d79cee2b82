"""Frames in, faces out: the one way frames become answers (the server's worker, videos, benchmarks).

For each batch of frames (encoded bytes, or decoded BGR or grey arrays), ``FramePipeline.process``

1. decodes each frame to grey and finds its faces: a whole-frame search, or, for a frame of a
   stream (a key: a client, a video file), that stream's ``FaceTracker`` (fer_core/track.py), which
   follows its faces near their last boxes and gives each an id;
2. crops every face, levelled on its eyes where the detector gives them (fer_core/faces.py);
3. plans the test-time views each face needs (fer_core/spread.py: a followed face one a frame,
   averaged with the others from its stream's last frames; a new face all of them, or its first
   only while the batch is a full one, ``one_view_from`` frames or more);
4. sends every planned view of every face of the batch through ONE ensemble call
   (``Predictor.view_probs``), then combines each face's views and its members by the ensemble's
   rule (``Predictor.combine``) and describes it (``Predictor.describe``).

Each frame gets a ``FrameResult``: its faces, largest first, with their track ids, or its own error;
one broken frame never fails the others. With ``prep_chunks`` >= 2 the batch is cut into that many
parts, and one thread of the pipeline's own decodes and searches part k+1 while the ensemble runs on
part k (both cores busy; the detectors are not thread-safe, so always that one thread).

The defaults are the served webcam stream's; a video file is read with ``track_still=0``,
``spread_views=False``, ``one_view_from=0`` (every frame answered on all its own views).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from . import tta as tta_views
from .config import ONE_VIEW_FROM, PREP_CHUNKS
from .faces import MAX_FACES, MAX_PIXELS, ImageError, crop_faces, decode_image, find_faces, to_gray
from .spread import FaceViews
from .track import REDETECT_EVERY, STILL_LEVELS, FaceTracker, Trackers, box_of

log = logging.getLogger(__name__)  # the type of a failure only: a message could quote image or tensor values


@dataclass
class FrameResult:
    """One frame's answer: ``faces`` (``Predictor.describe``'s, largest first) and their ``tracks``
    (each face's id in its stream, or its index where the frame was searched whole), the frame's
    ``width`` and ``height``, the ``views`` mode its faces got (the predictor's, or its first view
    alone where a face got only that), ``spread`` (some answer used views of an earlier frame) and,
    where asked, ``crop``: the main face's 48x48 grey crop, what the members classified. A frame that
    could not be used has ``error`` and ``code`` ('bad_image' or 'internal') instead."""
    faces: list[dict] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)
    width: int = 0
    height: int = 0
    views: str = ""
    spread: bool = False
    crop: np.ndarray | None = None
    error: str | None = None
    code: str | None = None


class Found(NamedTuple):
    """A frame's faces before the ensemble: its grey ``size`` (width, height), the faces' ``boxes``,
    48x48 ``crops`` (F, 48, 48) uint8 and ``tracks`` ids, and for a followed frame the stream's
    ``tracker`` and ``frame`` number (``FaceTracker.frames``; 0 when searched whole)."""
    size: tuple[int, int]
    boxes: list
    crops: np.ndarray
    tracks: list[int]
    tracker: FaceTracker | None = None
    frame: int = 0


def find_in_frame(frame, detector, max_faces: int = MAX_FACES, max_pixels: int = MAX_PIXELS,
                  tracker: FaceTracker | None = None) -> Found:
    """A frame's faces, cropped: ``frame`` is encoded bytes (decoded to grey, refused over
    ``max_pixels``) or an image array. With a ``tracker`` (built with ``max_faces``, which caps its
    faces) the faces are followed from the stream's last frame; without, the whole frame is searched.
    ImageError for bytes that are no usable image."""
    gray = decode_image(frame, max_pixels=max_pixels, grey=True) if isinstance(frame, (bytes, bytearray, memoryview)) \
        else to_gray(np.asarray(frame))
    size = (int(gray.shape[1]), int(gray.shape[0]))
    if tracker is None:
        boxes, crops = find_faces(gray, detector, max_faces=max_faces)
        return Found(size, boxes, crops, list(range(len(boxes))))
    tracker.update(gray)
    # this frame's eyes where the detector gives them (or, for a face that did not move, its last search's)
    faces = tracker.current_faces()
    return Found(size, [box_of(f) for f in faces], crop_faces(gray, faces), [i for i, _ in tracker.tracks()],
                 tracker, tracker.frames)


class FramePipeline:
    """Frames of any number of streams through one predictor (fer_core.predict.Predictor), with
    each stream's tracking state and each followed face's recent views kept between calls.

    ``max_faces``: faces per frame, the largest; ``max_pixels``: a decoded frame's cap;
    ``track_every``: a stream's whole-frame search every this many frames (0: every frame searched
    whole, no ids kept); ``track_still``: grey levels under which a region counts as unmoved and is
    not searched again (fer_core/track.py; 0: off); ``spread_views``: followed faces spread their
    test-time views over frames (fer_core/spread.py); ``one_view_from``: a batch of this many frames
    or more gives each face one view at most (0: never); ``prep_chunks``: parts of a batch prepared
    while the ensemble runs on the part before (0 or 1: the whole batch first)."""

    def __init__(self, predictor, max_faces: int = MAX_FACES, max_pixels: int = MAX_PIXELS,
                 track_every: int = REDETECT_EVERY, track_still: float = STILL_LEVELS, spread_views: bool = True,
                 one_view_from: int = ONE_VIEW_FROM, prep_chunks: int = PREP_CHUNKS):
        for name, value in (("max_faces", max_faces), ("max_pixels", max_pixels)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, value in (("track_every", track_every), ("one_view_from", one_view_from),
                            ("prep_chunks", prep_chunks)):
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not track_still >= 0:
            raise ValueError(f"track_still must be >= 0 grey levels, got {track_still!r}")
        self.predictor = predictor
        self.max_faces, self.max_pixels = max_faces, max_pixels
        self.track_every, self.track_still = track_every, track_still
        self.spread_views = bool(spread_views) and track_every > 0  # views spread over a followed face's frames only
        self.one_view_from, self.prep_chunks = one_view_from, prep_chunks
        self.n_views = tta_views.n_views(predictor.tta)
        det = predictor.detector
        # Faces, not boxes: each frame's crop is levelled on that frame's eyes (BlazeFace)
        self.trackers = Trackers(lambda: FaceTracker.for_detector(
            det, redetect_every=track_every, max_faces=max_faces, still=track_still)) if track_every else None
        self._pool = None

    def process(self, frames: Sequence, streams: Sequence | None = None, explained: Sequence[bool] | None = None,
                now: float | None = None) -> list[FrameResult]:
        """One ``FrameResult`` per frame, in order. ``streams``: one key per frame (None: that frame
        searched whole), the frames of one stream in their order; ``explained``: frames whose main
        face will be explained, answered on all of this frame's own views, with their ``crop``;
        ``now``: the time of the batch (time.monotonic() by default), which ages the views kept."""
        n = len(frames)
        for name, given in (("streams", streams), ("explained", explained)):
            if given is not None and len(given) != n:
                raise ValueError(f"{name} must have one entry per frame ({n}), got {len(given)}")
        now = time.monotonic() if now is None else now
        streams = streams if streams is not None and self.trackers is not None else [None] * n
        explained = [bool(e) for e in explained] if explained is not None else [False] * n
        at_most_one = 0 < self.one_view_from <= n

        def prep(lo, hi):
            return [self._find(frames[k], streams[k], now) for k in range(lo, hi)]

        if self.prep_chunks < 2 or n < 2:
            return self._classify(prep(0, n), explained, at_most_one, now)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-prep")
        size = -(-n // self.prep_chunks)
        parts = [(lo, self._pool.submit(prep, lo, min(n, lo + size))) for lo in range(0, n, size)]
        out = []
        for lo, fut in parts:
            found = fut.result()
            out += self._classify(found, explained[lo:lo + len(found)], at_most_one, now)
        return out

    def close(self) -> None:
        """Stop the preparing thread, if one was started."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _find(self, frame, stream, now: float):
        """``find_in_frame`` with the stream's tracker, and the followed faces' kept views taken now
        (a stream's next frame in the same batch moves its tracker on); or the frame's error."""
        try:
            tracker = self.trackers.get(stream, now) if stream is not None else None
            found = find_in_frame(frame, self.predictor.detector, self.max_faces, self.max_pixels, tracker)
        except ImageError as e:
            return FrameResult(error=str(e), code="bad_image")
        except Exception as e:  # noqa: BLE001 - one odd frame must not end the batch
            log.warning("frame failed: %s", type(e).__name__)
            return FrameResult(error="the frame could not be processed", code="internal")
        kept = found.tracker.kept_for(lambda: FaceViews(self.n_views)) if self.spread_views and found.tracker else None
        return found, kept

    def _classify(self, prepared, explained, at_most_one: bool, now: float) -> list[FrameResult]:
        """Results for prepared frames: every view their faces need through one ensemble call."""
        pred = self.predictor
        out: list[FrameResult] = []
        faces = []  # per face: (index in out, its FaceViews, its stream's frame number, views to compute)
        crops = []
        for k, p in enumerate(prepared):
            if isinstance(p, FrameResult):
                out.append(p)
                continue
            found, kept = p
            out.append(FrameResult(tracks=found.tracks, width=found.size[0], height=found.size[1],
                                   views=str(pred.tta)))
            crops.append(found.crops)
            if explained[k] and len(found.boxes):  # faces come largest first: the main face's crop
                out[-1].crop = found.crops[0]
            for j in range(len(found.boxes)):
                # kept views for a followed face; none for the others: every view, or the first under load
                memo = kept[j] if kept else FaceViews(self.n_views)
                # an explained frame: its answer and crop are this frame's alone (all views)
                todo = list(range(self.n_views)) if explained[k] else memo.plan(found.frame, now, at_most_one)
                faces.append((len(out) - 1, memo, found.frame, todo, found.boxes[j]))
        if not faces:
            return out
        picks = [(i, j) for i, (*_, todo, _) in enumerate(faces) for j in todo]
        try:
            got = pred.view_probs(np.concatenate(crops), picks)  # one call for every view of every face
        except Exception as e:  # noqa: BLE001 - these frames fail, the pipeline lives on
            log.warning("inference failed: %s", type(e).__name__)
            failed = {i for i, *_ in faces}
            return [FrameResult(error="inference failed", code="internal") if k in failed else r
                    for k, r in enumerate(out)]
        member_probs, used, earlier, at = [], [], [], 0
        for _, memo, frame, todo, _ in faces:
            mp, n_used, early = memo.record(frame, now, dict(zip(todo, got[at:at + len(todo)])))
            at += len(todo)
            member_probs.append(mp)
            used.append(n_used)
            earlier.append(early)
        member_probs = np.stack(member_probs)
        described = pred.describe(pred.combine(member_probs), member_probs, [f[4] for f in faces])
        first = str(tta_views.first_view(pred.tta))
        for (k, *_), face, n_used, early in zip(faces, described, used, earlier):
            r = out[k]
            r.faces.append(face)
            if n_used < self.n_views:
                r.views = first  # a face of it got its first view only
            r.spread = r.spread or early
        return out

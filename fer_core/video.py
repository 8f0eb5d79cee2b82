"""Faces in video files and folders of images, as rows: one per face per frame (or per file).

``video_frames`` reads a video with OpenCV's VideoCapture, every frame or every k-th, and passes its
frames through the server's own pipeline (``fer_core.pipeline.FramePipeline``: a whole-frame search
every few frames, the faces followed near their last boxes in between, so a face keeps its box and
id), several frames' faces in one ensemble call, which costs several times less per face than one
call per frame. Each frame is answered on all of its own test-time views (nothing spread over frames). ``rows`` flattens its frames, or one image's faces, into rows
of ``columns``: the one schema that ``python -m fer_core predict --format csv|jsonl`` writes.

Whether a file is a video or an image is decided by its extension (``kind_of``): a video is opened
with VideoCapture, an image decoded with ``fer_core.faces.decode_image``. Either is read only when
``regular_file`` finds a regular file there, and a video's frames are held to the images' pixel cap.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .faces import MAX_FACES, MAX_PIXELS, to_gray
from .pipeline import FramePipeline
from .track import REDETECT_EVERY

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm")
BATCH_FRAMES = 16  # frames whose faces go through the ensemble together (BUCKETS of fer_core.predict)


class VideoError(ValueError):
    """A video that cannot be opened or read; the message names the file."""


def kind_of(path) -> str:
    """'video' or 'image', from the file's extension; ValueError naming the file for any other."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    raise ValueError(f"{path}: unknown extension {ext or '(none)'!r}: images are "
                     f"{' '.join(IMAGE_EXTENSIONS)}, videos {' '.join(VIDEO_EXTENSIONS)}")


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path) -> Path:
    """``path`` as a Path where it is a regular file (or a symbolic link to one); else FileNotFoundError
    (nothing there) or ValueError naming the file and what is there instead. Nothing is opened: a FIFO
    would block the reader, a device (/dev/zero) never end."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise FileNotFoundError(f"{p}: a symbolic link to a missing file") from None
        raise FileNotFoundError(f"{p}: no such file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{p}: a loop of symbolic links") from None
        raise ValueError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), f"file type {stat.S_IFMT(st.st_mode):o}")
        raise ValueError(f"{p}: not a regular file ({what}); only image and video files are read")
    return p


def folder_files(folder) -> list[Path]:
    """A folder's entries but its sub-folders, sorted by name, not recursive; hidden ones (a dot
    first) are left out. What is no readable file (a symbolic link loop, a FIFO) is kept: it gets its
    error row from ``regular_file``."""
    return sorted(p for p in Path(folder).iterdir() if not p.is_dir() and not p.name.startswith("."))


def check_pixels(path, width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """VideoError naming the file where one frame is over ``max_pixels`` (the images' cap): a frame is
    decoded whole, so its size bounds the memory (an 8000x8000 frame took 1.4 GB)."""
    if width * height > max_pixels:
        raise VideoError(f"{Path(path)}: frames of {width}x{height} pixels, over the limit of {max_pixels} "
                         f"(as for images)")


def open_video(path, max_pixels: int = MAX_PIXELS):
    """(cv2.VideoCapture, frames/s or 0 when unknown, frame count or 0 when unknown); VideoError for
    a file OpenCV cannot open or whose frames are over ``max_pixels``, before any frame is decoded."""
    import cv2

    p = regular_file(path)
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{p}: cannot be opened as a video (OpenCV's VideoCapture refused it)")
    try:
        check_pixels(p, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), max_pixels)
    except VideoError:
        cap.release()
        raise
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, (fps if fps and np.isfinite(fps) and fps > 0 else 0.0), max(count, 0)


def video_frames(pred, path, every: int = 1, track_every: int = REDETECT_EVERY, max_faces: int = MAX_FACES,
                 batch_frames: int = BATCH_FRAMES, progress: Callable[[int, int], None] | None = None
                 ) -> Iterator[dict]:
    """One dict per frame read, in order: {"frame": index in the file, "time": seconds (index / the
    file's frames/s; None when the file does not say), "faces": ``Predictor.describe``'s faces, each
    with "track", its id}. ``every`` k reads every k-th frame (0, k, 2k, ...; the others are grabbed
    and dropped). ``track_every`` 0 searches every frame whole, and a face's id is then its index.
    ``progress(done, total)`` is called with the frames of the file passed and the file's frame count
    (the frames passed so far where the file does not say). A file that ends early (truncated) ends
    its frames there; one with no readable frame at all raises VideoError."""
    import cv2

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every!r}")
    if track_every < 0:
        raise ValueError(f"track_every must be >= 0, got {track_every!r}")
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames!r}")
    cap, fps, total = open_video(path)
    # as the server follows a webcam, but every frame answered on its own views: an image's labels
    pipeline = FramePipeline(pred, max_faces=max_faces, track_every=track_every, track_still=0.0,
                             spread_views=False, one_view_from=0, prep_chunks=0)
    pending: list[tuple[int, np.ndarray]] = []  # (frame index, grey frame) awaiting the ensemble

    def classify():
        results = pipeline.process([g for _, g in pending], streams=[path] * len(pending))
        out = []
        for (index, _), r in zip(pending, results):
            if r.error is not None:  # the file's error row, rather than frames without their faces
                raise VideoError(f"{Path(path)}: frame {index}: {r.error}")
            out.append({"frame": index, "time": round(index / fps, 3) if fps else None,
                        "faces": [dict(f, track=t) for t, f in zip(r.tracks, r.faces)]})
        pending.clear()
        return out

    index = read = 0
    try:
        while True:
            if index % every:
                if not cap.grab():  # skipped: no conversion to BGR, no copy (retrieve's work)
                    break
            else:
                ok, frame = cap.read()
                if not ok:
                    break
                check_pixels(path, frame.shape[1], frame.shape[0])  # a frame larger than the header said: no more
                read += 1
                pending.append((index, to_gray(frame)))  # held in grey: a third of the memory
                if len(pending) >= batch_frames:
                    yield from classify()
            index += 1
            if progress is not None:
                progress(index, max(total, index))
        if pending:
            yield from classify()
    finally:
        cap.release()
        pipeline.close()
    if read == 0:
        raise VideoError(f"{Path(path)}: no frame could be decoded")


def columns(labels, members) -> list[str]:
    """The rows' columns: where the face is, then its label, one probability per class (the labels'
    own names), each member's top label (``vote_<member>``), and ``error`` for a file that failed."""
    return (["path", "frame", "time", "face", "track", "x", "y", "w", "h", "label", *labels,
             *(f"vote_{m}" for m in members), "error"])


def rows(path, faces_of: list[dict] | None = None, frame: dict | None = None, error: str | None = None,
         labels=(), members=()) -> list[dict]:
    """Rows (dicts over ``columns``) for one image's faces (``faces_of``), one video frame
    (``frame``, from ``video_frames``) or a file that failed (``error``). A frame or image without a
    face still gets one row, its face columns empty, so that every frame read and file is there."""
    base = dict.fromkeys(columns(labels, members))
    base["path"] = str(path)
    if error is not None:
        return [dict(base, error=error)]
    if frame is not None:
        base.update(frame=frame["frame"], time=frame["time"])
        faces = frame["faces"]
    else:
        faces = faces_of or []
    out = []
    for i, f in enumerate(faces):
        r = dict(base, face=i, track=f.get("track"), label=f["label"])
        r.update(zip(("x", "y", "w", "h"), f["box"]))
        r.update(f["probabilities"])
        r.update({f"vote_{m}": v["label"] for m, v in f["members"].items()})
        out.append(r)
    return out or [base]

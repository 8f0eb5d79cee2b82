"""Facial expressions from Python: load an ensemble once, then classify images, files and videos.

    from fer_core.api import load

    fer = load()                                   # the shipped models/ (a few seconds, once)
    for face in fer.classify_file("photo.jpg"):
        print(face["box"], face["label"], face["probabilities"]["happy"], face["members"])
    faces = fer.classify_image(image)              # a BGR or grey uint8 array, as cv2.imread gives
    for frame in fer.classify_video("clip.mp4", every=5):
        print(frame["frame"], frame["time"], [f["label"] for f in frame["faces"]])

The same objects as ``python -m fer_core predict`` (fer_core/cli.py): a ``fer_core.predict.Predictor``
(detection, crops, the ensemble's members, rule and test-time views) and ``fer_core.video.video_frames``
for videos, so the answers are the CLI's. A face is plain data, the CLI's JSON:
{"box": [x, y, w, h], "label": str, "probabilities": {label: p}, "members": {member: {"label": its
vote, "confidence": its probability for that label}}}; faces come largest first.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .config import MAX_FACES
from .track import REDETECT_EVERY


class Classifier:
    """One ensemble, loaded once (``load``); every method returns plain dicts and lists."""

    def __init__(self, predictor):
        self.predictor = predictor  # fer_core.predict.Predictor, as the CLI and the server use it

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    @property
    def members(self) -> list[str]:
        return list(self.predictor.member_names)

    def classify_image(self, image: np.ndarray, whole: bool = False, max_faces: int = MAX_FACES) -> list[dict]:
        """The faces in a BGR (or BGRA, or grey) uint8 image array. ``whole``: the image is one face,
        already cropped (no detection)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))) or 0 in image.shape:
            what = (f"an array of {image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                    else type(image).__name__)
            raise ValueError(f"image must be a uint8 array (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got {what}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces!r}")
        return self.predictor.predict_image(image, whole=whole, max_faces=max_faces)

    def classify_file(self, path, whole: bool = False) -> list[dict]:
        """The faces in an image file (fer_core.video.IMAGE_EXTENSIONS); ValueError naming the file
        for a video (``classify_video``), an unknown extension or an unreadable image."""
        from .video import kind_of

        if kind_of(path) == "video":
            raise ValueError(f"{path} is a video: use classify_video")
        return self.predictor.predict_file(path, whole=whole)

    def classify_video(self, path, every: int = 1, track_every: int = REDETECT_EVERY) -> Iterator[dict]:
        """One dict per frame read: {"frame": its index, "time": seconds (None where the file has no
        frame rate), "faces": the faces, each with "track", its id while it is followed}. Faces are
        found and followed as the server follows a webcam; ``every`` k reads every k-th frame."""
        from .video import video_frames

        return video_frames(self.predictor, path, every=every, track_every=track_every)


def load(models=None, detector: str | None = None, tta: str | None = None) -> Classifier:
    """The ensemble in ``models`` (a folder; default $FER_MODELS, else the shipped models/), with the
    face ``detector`` (fer_core.config.DETECTORS; default the server's) and the ensemble's own
    test-time views unless ``tta`` names others (fer_core.tta.TTA), run by what the server would
    run here (``fer_core.runtime.DEFAULT_RUNTIME``: the fastest admitted runtime, measured)."""
    from . import quiet

    quiet.load_backend()  # TensorFlow's start-up lines are noise here as in the CLI
    from .predict import Predictor

    return Classifier(Predictor(models, tta=tta, detector=detector))

"""Decoding frames, finding faces, and cropping them the way FER2013 was cropped.

The detector is OpenCV's Haar cascade for frontal faces: it ships inside opencv-python-headless 4.x
(5.x dropped CascadeClassifier) and needs no download. Its settings trade a little recall on small
faces for speed, because the live server runs it on every frame of every client (docs/benchmarks.md):
search steps of 30 %, faces of at least 14 % of the frame's shorter side, and frames larger than
320 px (shorter side) searched on a downscaled copy.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np

MAX_PIXELS = 4096 * 4096  # a frame header claiming more is refused before any decoding


class ImageError(ValueError):
    """Bytes that are not a usable image; the message says why."""


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, grey: bool = False) -> np.ndarray:
    """JPEG/PNG/... bytes -> BGR uint8 array (``grey``: one channel, decoded straight to grey, which
    is all face detection needs). Raises ImageError on empty, oversized or bad data.

    The header is read first (Pillow reads only the header), so a tiny file claiming a huge size
    is refused without allocating it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("empty image")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise ImageError(f"image size outside 1..{max_pixels} pixels (header claims too many)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageError("not a decodable image") from None
    if w < 1 or h < 1 or w * h > max_pixels:
        raise ImageError(f"image size {w}x{h} outside 1..{max_pixels} pixels")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError("not a decodable image (truncated or corrupt)")
    return img


def to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    raise ImageError(f"unsupported image shape {img.shape}")


@dataclass
class FaceDetector:
    """Haar-cascade face detector. ``min_size`` is a fraction of the frame's shorter side: faces of a
    webcam user are large, and tiny detections are mostly false positives. Frames whose shorter side
    exceeds ``detect_side`` pixels are searched on a copy downscaled to it (boxes are mapped back to
    the frame), so a 1080p still costs about what the page's 320 px frames cost.

    The defaults were chosen on a 320 px frame (docs/benchmarks.md): they take a third of the time of
    (scale 1.1, neighbours 6, min 10 %), still find the astronaut test face at 240 to 1024 px and
    both faces of the two-face test frame, and find no face in scikit-image's other sample images."""

    scale_factor: float = 1.3  # each search scale 30 % larger than the last (1.1 searched 3x as many)
    min_neighbors: int = 5     # overlapping hits a face needs; fewer let a false face through
    min_size: float = 0.14     # 34 px on a 320x240 frame; smaller faces give a blurry 48x48 crop anyway
    detect_side: int = 320     # downscale larger frames to this shorter side before searching; 0: never
    # detect_near (fer_core/track.py): a search near a known face, far cheaper than the whole frame
    near_side: int = 48        # its region is scaled so that the known face is this many pixels wide
    near_scale: float = 1.2    # 1.3 lost 1-20 % of faces near 48 px (bench/bench_track.py), 1.15 cost 40 % more

    def __post_init__(self):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path}")

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in ``gray``'s pixels, largest first."""
        H, W = gray.shape[:2]
        scale = self.detect_side / min(H, W) if self.detect_side and min(H, W) > self.detect_side else 1.0
        small = gray if scale == 1.0 else cv2.resize(
            gray, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
        side = max(12, int(self.min_size * min(small.shape[:2])))
        found = self._cascade.detectMultiScale(small, scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors, minSize=(side, side))
        boxes = []
        for b in (found if len(found) else []):
            x, y, w, h = (float(v) / scale for v in b)
            x0, y0 = max(0, round(x)), max(0, round(y))
            boxes.append((x0, y0, min(W - x0, round(w)), min(H - y0, round(h))))
        return sorted(boxes, key=lambda b: -b[2] * b[3])

    def detect_near(self, gray: np.ndarray, box, search: float = 0.5, size_range: float = 1.5):
        """Boxes (x, y, w, h) in ``gray``'s pixels found in ``box`` enlarged by ``search`` x its side
        on each edge, only at sizes within ``size_range`` x of the box's: a few scales of a small
        region, where the full search scans every scale of the whole frame."""
        if search < 0 or size_range < 1:
            raise ValueError(f"need search >= 0 and size_range >= 1, got {search!r}, {size_range!r}")
        H, W = gray.shape[:2]
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        if side < 1:
            raise ValueError(f"box must have a positive size, got {box!r}")
        x0, y0 = max(0, int(x - search * side)), max(0, int(y - search * side))
        x1, y1 = min(W, int(np.ceil(x + w + search * side))), min(H, int(np.ceil(y + h + search * side)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        scale = min(1.0, self.near_side / side)  # never upscale: a small face is searched as it is
        roi = gray[y0:y1, x0:x1]
        if scale < 1.0:
            roi = cv2.resize(roi, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                             interpolation=cv2.INTER_AREA)
        lo = max(12, int(side * scale / size_range))
        hi = max(lo + 1, int(np.ceil(side * scale * size_range)))
        found = self._cascade.detectMultiScale(roi, scaleFactor=self.near_scale, minNeighbors=self.min_neighbors,
                                               minSize=(lo, lo), maxSize=(hi, hi))
        boxes = []
        for b in (found if len(found) else []):
            bx, by, bw, bh = (float(v) / scale for v in b)
            bx0, by0 = max(0, round(x0 + bx)), max(0, round(y0 + by))
            boxes.append((bx0, by0, min(W - bx0, round(bw)), min(H - by0, round(bh))))
        return sorted(boxes, key=lambda b: -b[2] * b[3])


def crop_face(gray: np.ndarray, box, margin: float = 0.1, size: int = 48) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin`` of its side on each edge (FER2013's faces
    include a little forehead and chin), edge-padded where it leaves the frame, resized to size²."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    H, W = gray.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - W, y0 + s - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def crop_faces(gray: np.ndarray, boxes, margin: float = 0.1) -> np.ndarray:
    """Crops uint8 (n, 48, 48) of ``boxes`` in a grey frame."""
    return np.stack([crop_face(gray, b, margin) for b in boxes]) if len(boxes) else np.zeros((0, 48, 48), np.uint8)


def find_faces(img: np.ndarray, detector: FaceDetector, max_faces: int = 8, margin: float = 0.1):
    """(boxes, crops uint8 (n, 48, 48)) for up to ``max_faces`` faces, largest first."""
    gray = to_gray(img)
    boxes = detector.detect(gray)[:max_faces]
    return boxes, crop_faces(gray, boxes, margin)

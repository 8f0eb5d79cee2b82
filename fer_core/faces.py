"""Decoding frames, finding faces, and cropping them the way FER2013 was cropped.

Two detectors with one interface (``detect``: boxes largest first; ``detect_near``: near a known
box, for fer_core/track.py; ``detect_faces``/``detect_near_faces``: ``Face``s with the eyes):

* ``BlazeFaceDetector`` (served by default): MediaPipe's BlazeFace full range, shipped in
  models/detector/ and run with LiteRT, with its short-range model for faces already followed. It
  finds heads rolled +-30 degrees, which the cascade misses, and gives both eyes, on which
  ``align_crop`` levels the crop (docs/benchmarks.md).
* ``FaceDetector``: OpenCV's Haar cascade for frontal, upright faces. It ships inside
  opencv-python-headless 4.x (5.x dropped CascadeClassifier) and needs no download. Its settings
  trade a little recall on small faces for speed: search steps of 30 %, faces of at least 14 % of
  the frame's shorter side, and frames larger than 320 px (shorter side) searched on a downscaled copy.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# the detectors' names and the faces cap live with the settings (no OpenCV there)
from .config import DEFAULT_DETECTOR, DETECTORS, MAX_FACES
from .store import DEFAULT_MODELS  # the detector's files ship there, in a checkout or installed

MAX_PIXELS = 4096 * 4096  # a frame header claiming more is refused before any decoding
# A face's box enlarged by this fraction of its side on each edge frames it as FER2013's crops do.
MARGIN = 0.1
# An image file is read whole before its header is looked at: a file over this many bytes is refused
# unread. MAX_PIXELS pixels of 4 bytes (an uncompressed BGRA bitmap, the largest common image of
# that size) and 1 MB of headers and metadata; a larger file is no image decode_image would take.
MAX_IMAGE_BYTES = 4 * MAX_PIXELS + (1 << 20)
# BlazeFace's box (eyebrows to mouth, after its levelled second look) -> the Haar cascade's framing,
# which crop_face's margin was set for: on the two shipped upright faces (astronaut, grace_hopper; as
# shipped and at 320 px) Haar's side is 0.93-1.11 x BlazeFace's (mean 1.02), and its centre 4.8-6.4 %
# of the side higher (mean 5.8 %), towards the forehead
BOX_SCALE = 1.02
BOX_RAISE = 0.058
# The short-range model's box (the near search's) -> the full-range model's on the same face, by
# input side (128: the short-range model; other files get no correction): measured on the shipped
# faces by bench/bench_near.py (docs/benchmarks.md), so that a followed box does not jump when the
# whole-frame search comes round.
NEAR_BOX = {128: (1.081, 0.066)}  # input side: (x box_scale, + box_raise)


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


def read_image_file(path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """An image file's bytes for ``decode_image``; ImageError for a file over ``max_bytes``, refused
    by its size before any of it is read (and never more than ``max_bytes`` + 1 read, should it
    grow meanwhile). FileNotFoundError naming a path that is not a file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:
        raise ImageError(f"{max(size, len(data)):,} bytes, over the limit of {max_bytes:,} for an image "
                         "(fer_core.faces.MAX_IMAGE_BYTES)")
    return data


def to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    raise ImageError(f"unsupported image shape {img.shape}")


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x, y, w, h) in the frame's pixels; the two eyes (x, y) as the
    detector gives them (``left_eye``: the one on the image's left when the face is upright, the
    person's right eye), or None where it gives none (Haar); the detector's score (Haar: 1)."""
    box: tuple
    left_eye: tuple | None = None
    right_eye: tuple | None = None
    score: float = 1.0

    @property
    def roll(self) -> float:
        """Degrees from the left to the right eye against the horizontal, image y down (positive:
        the head leans clockwise on screen); 0 without eyes."""
        if self.left_eye is None or self.right_eye is None:
            return 0.0
        dx, dy = self.right_eye[0] - self.left_eye[0], self.right_eye[1] - self.left_eye[1]
        return float(np.degrees(np.arctan2(dy, dx)))


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

    def detect_faces(self, gray: np.ndarray) -> list["Face"]:
        """``detect``'s boxes as Faces, without eyes: the cascade finds none."""
        return [Face(b) for b in self.detect(gray)]

    def detect_near_faces(self, gray: np.ndarray, box, **kw) -> list["Face"]:
        """``detect_near`` as Faces; ``box`` may be a Face (the tracker passes the last one)."""
        return [Face(b) for b in self.detect_near(gray, getattr(box, "box", box), **kw)]


# -- BlazeFace (MediaPipe's full-range face detector, served by default: docs/benchmarks.md) --
BLAZEFACE_PATH = DEFAULT_MODELS / "detector" / "blazeface_full_range_sparse.tflite"
BLAZEFACE_SHA256 = "671dd2f9ed11a78436fc21cc42357a803dfc6f73e9fb86541be942d5716c2dce"  # models/detector/README.md
# The near search (a followed face, in a patch of 2.5x its side) runs the short-range model: 128 px
# instead of 192, a third of the full-range model's cost (docs/benchmarks.md), for a face that fills
# 40 % of the patch, as selfie-distance faces do the frames it was made for.
BLAZEFACE_NEAR_PATH = BLAZEFACE_PATH.parent / "blazeface_short_range.tflite"
BLAZEFACE_NEAR_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
# MediaPipe's SSD anchor layouts of its two front-camera models, told apart by their input side:
# (strides of the layers, anchors each layer adds per cell); layers of one stride share a grid.
ANCHOR_LAYOUTS = {192: ((4,), 1),             # full range: one 48x48 grid, 2304 anchors
                  128: ((8, 16, 16, 16), 2)}  # short range: 16x16 x 2 + 8x8 x 6 = 896 anchors


class DetectorError(RuntimeError):
    """A detector's model file is missing or is not the file that ships."""


def read_model_file(path, sha256: str | None) -> bytes:
    """The bytes of a shipped model file, checked against its sha256 (None: unchecked)."""
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"{path}: face detector model file missing (it ships in the repository; "
                            "models/detector/README.md says where it comes from)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DetectorError(f"{path}: sha256 {digest} is not the shipped model's {sha256} "
                            "(a different or damaged file; models/detector/README.md)")
    return data


def blazeface_anchors(side: int = 192, strides=(4,), per_layer: int = 1) -> np.ndarray:
    """Anchor centres (n, 2) as (x, y) in [0, 1] of the model's input, in the model's output order:
    grid by grid (consecutive layers of one stride share a grid and each adds ``per_layer`` anchors
    to its cells), row by row, a cell's anchors together; each offset half a cell, all of unit
    size, so the regressed widths and heights are absolute. The defaults are the full-range model's
    (one anchor per cell of a 48x48 grid at 192 px); ``ANCHOR_LAYOUTS`` has the short-range one."""
    if side < 1 or not strides or per_layer < 1 or any(st < 1 or side % st for st in strides):
        raise ValueError(f"need strides dividing side and per_layer >= 1, got side={side!r}, "
                         f"strides={strides!r}, per_layer={per_layer!r}")
    grids, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = side // strides[i]
        c = (np.arange(n, dtype=np.float32) + 0.5) / n
        ys, xs = np.meshgrid(c, c, indexing="ij")
        grids.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(grids)


def decode_blazeface(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, side: int):
    """The model's raw outputs -> (boxes (n, 4) as x0, y0, x1, y1, keypoints (n, k, 2), scores (n,)),
    coordinates in [0, 1] of the input. Each anchor regresses (cx, cy, w, h, then k keypoints' x, y)
    in input pixels, centre and keypoints relative to the anchor's centre."""
    n = len(anchors)
    raw = np.asarray(raw_boxes, np.float32).reshape(n, -1, 2) / side
    centre, half = raw[:, 0] + anchors, raw[:, 1] / 2
    points = raw[:, 2:] + anchors[:, None, :]
    # clipped like MediaPipe's, so that exp() stays finite in float32
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(n), -80, 80)
    return np.concatenate([centre - half, centre + half], axis=1), points, 1 / (1 + np.exp(-logits))


def _iou_xyxy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, min_score: float, iou: float):
    """[(box, points, score)], best first: the anchors scoring at least ``min_score``, grouped
    around the best remaining one (overlap above ``iou``), each group averaged with its scores as
    weights (neighbouring anchors all fire on one face; their mean trembles less than the best one)."""
    keep = scores >= min_score
    boxes, points, scores = boxes[keep], points[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    out = []
    while len(order):
        overlap = _iou_xyxy(boxes[order[0]], boxes[order])
        overlap[0] = 1.0  # the best box is in its own group, even a degenerate one
        group, order = order[overlap > iou], order[overlap <= iou]
        w = scores[group]
        out.append(((boxes[group] * w[:, None]).sum(0) / w.sum(), (points[group] * w[:, None, None]).sum(0) / w.sum(),
                     float(scores[group[0]])))
    return out


class _BlazeNet:
    """One BlazeFace model file in a LiteRT interpreter: its square input side, its anchors (by
    ``ANCHOR_LAYOUTS``), and ``box_scale`` / ``box_raise``, which map its box (eyebrows to mouth) to
    the Haar cascade's framing; a ``near`` net's also to the full-range model's (``NEAR_BOX``)."""

    def __init__(self, path, sha256, threads: int, box_scale: float, box_raise: float, near: bool = False):
        from .runtime import litert_interpreter
        self.it = litert_interpreter(threads, model_content=read_model_file(path, sha256))
        inp = self.it.get_input_details()[0]
        _, h, w, c = (int(v) for v in inp["shape"])
        if h != w or c != 3 or h not in ANCHOR_LAYOUTS:
            raise DetectorError(f"{path}: expected a square RGB input of {sorted(ANCHOR_LAYOUTS)} px, the model "
                                f"takes {inp['shape'].tolist()}")
        self.side, self.input = h, inp["index"]
        outs = {int(d["shape"][-1]): d["index"] for d in self.it.get_output_details()}
        if set(outs) != {1, 16}:
            raise DetectorError(f"{path}: expected outputs of 16 box values and 1 score per anchor, got "
                                f"{[d['shape'].tolist() for d in self.it.get_output_details()]}")
        self.boxes_out, self.scores_out = outs[16], outs[1]
        k, r = NEAR_BOX.get(self.side, (1.0, 0.0)) if near else (1.0, 0.0)
        self.box_scale, self.box_raise = box_scale * k, box_raise + r
        self.anchors = blazeface_anchors(self.side, *ANCHOR_LAYOUTS[self.side])
        n = int(self.it.get_output_details()[0]["shape"][1])
        if n != len(self.anchors):
            raise DetectorError(f"{path}: {n} anchors, expected {len(self.anchors)} for a {self.side} px input")


class BlazeFaceDetector:
    """MediaPipe's BlazeFace full range (models/detector/), run with LiteRT on ``threads`` threads:
    finds faces rolled 30 degrees that the Haar cascade misses, and gives both eyes, so that crops
    can be levelled (``align_crop``). Same interface as ``FaceDetector`` (``detect``, ``detect_near``
    return boxes largest first), plus ``detect_faces``/``detect_near_faces`` returning ``Face``s.

    A frame is letterboxed into the model's 192x192 input; a grey frame is fed as three equal
    channels (the server decodes grey; docs/benchmarks.md measures that it finds the same faces).
    ``box_scale`` and ``box_raise`` map BlazeFace's box (eyebrows to mouth) to the Haar cascade's
    framing (``BOX_SCALE``), so that ``crop_face``'s margin frames the face as FER2013 does.
    Each face is looked at twice: once in the frame, once in a patch turned so that its eyes are
    level (``level_context``; 0: once), where its box and eyes are an upright face's, so that the
    crop of a rolled head matches the upright one.
    A followed face (``detect_near_faces`` given the last ``Face``) is looked for by the
    short-range model ``near_path`` (None: the full-range one) in a patch of ``near_context`` x its
    side turned by its last roll; the box is mapped to the full-range framing (``NEAR_BOX``) and
    the last eyes are carried along with it, so a followed face's roll, and its crop's levelling,
    change only at whole-frame searches (every 8 frames in the server, or when a face is lost).
    ``min_size`` is a fraction of the frame's shorter side, as for ``FaceDetector``; at most
    ``max_faces`` faces (the largest) are returned. Not
    thread-safe: one interpreter, one thread (the worker's preparing thread)."""

    def __init__(self, path=BLAZEFACE_PATH, threads: int = 1, min_score: float = 0.5, nms_iou: float = 0.3,
                 box_scale: float = BOX_SCALE, box_raise: float = BOX_RAISE, min_size: float = 0.14, level_context: float = 4.0,
                 tile_above: float = 1.8, max_faces: int = 16, sha256: str | None = BLAZEFACE_SHA256,
                 near_path=BLAZEFACE_NEAR_PATH, near_sha256: str | None = BLAZEFACE_NEAR_SHA256,
                 near_context: float = 2.5):
        if threads < 1 or max_faces < 1:
            raise ValueError(f"threads and max_faces must be >= 1, got {threads!r}, {max_faces!r}")
        if not 0 < min_score < 1 or not 0 < nms_iou < 1:
            raise ValueError(f"need 0 < min_score < 1 and 0 < nms_iou < 1, got {min_score!r}, {nms_iou!r}")
        if tile_above and tile_above < 1:
            raise ValueError(f"tile_above must be 0 (never tile) or >= 1, got {tile_above!r}")
        if level_context and level_context < 1.5:
            raise ValueError(f"level_context must be 0 (no second look) or >= 1.5, got {level_context!r}")
        if box_scale <= 0 or not 0 <= min_size < 1:
            raise ValueError(f"need box_scale > 0 and 0 <= min_size < 1, got {box_scale!r}, {min_size!r}")
        if not near_context >= 1.5:  # NaN too
            raise ValueError(f"near_context must be >= 1.5, got {near_context!r}")
        self.path, self.threads = Path(path), threads
        self.min_score, self.nms_iou, self.min_size = min_score, nms_iou, min_size
        # the second, levelled look (_level) sees 4 x the face's side: in an exploratory run (not kept)
        # 2-3 x gave boxes 7-13 % larger than the whole frame's, and crops of rolled heads that
        # matched the upright one less (docs/benchmarks.md has the measured 1- and 2-look numbers)
        self.level_context = level_context
        # the short-range look sees 2.5 x the face's side (the face 40 % of its 128 px input): its box
        # varied less there than in a 4x patch, and 3x measured the same (bench_near.py)
        self.near_context = near_context
        # frames longer than this x their height are also searched in square tiles; 1.8 leaves the
        # page's 16:9 and 4:3 frames whole (one call), and tiles 2:1 stills and wider
        self.tile_above = tile_above
        # faces per frame, the largest, that get the second look and are returned: a frame of noise can
        # score many anchors, each look is a model call; the server serves 8 (WebConfig.max_faces)
        self.max_faces = max_faces
        self._net = _BlazeNet(path, sha256, threads, box_scale, box_raise)
        self._near = self._net if near_path is None else \
            _BlazeNet(near_path, near_sha256, threads, box_scale, box_raise, near=True)
        self.side, self.anchors = self._net.side, self._net.anchors

    def _letterbox(self, img: np.ndarray, side: int):
        """(input tensor (1, side, side, 3) in [-1, 1], scale, pad x, pad y): the frame scaled to fit
        the input, centred, black around it, as RGB (a grey frame in all three channels)."""
        H, W = img.shape[:2]
        scale = side / max(H, W)
        w, h = max(1, round(W * scale)), max(1, round(H * scale))
        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        px, py = (side - w) // 2, (side - h) // 2
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[py:py + h, px:px + w] = small[:, :, None] if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        return (canvas.astype(np.float32) / 127.5 - 1)[None], scale, px, py

    def _run(self, img: np.ndarray, net: "_BlazeNet | None" = None) -> list[Face]:
        """One model call (``net``, default the full-range one): faces in ``img`` (grey, or BGR),
        unfiltered by size, best score first."""
        net = net or self._net
        x, scale, px, py = self._letterbox(img, net.side)
        net.it.set_tensor(net.input, x)
        net.it.invoke()
        boxes, points, scores = decode_blazeface(net.it.get_tensor(net.boxes_out),
                                                 net.it.get_tensor(net.scores_out), net.anchors, net.side)
        H, W = img.shape[:2]
        to_frame = lambda v, pad: (float(v) * net.side - pad) / scale  # noqa: E731 - input [0, 1] -> frame px
        faces = []
        for (x0, y0, x1, y1), pts, score in weighted_nms(boxes, points, scores, self.min_score, self.nms_iou):
            cx, cy = to_frame((x0 + x1) / 2, px), to_frame((y0 + y1) / 2, py)
            side = max(x1 - x0, y1 - y0) * net.side / scale
            eyes = [(to_frame(p[0], px), to_frame(p[1], py)) for p in pts[:2]]
            # raised towards the forehead along the face's own up (perpendicular to the eye line)
            roll = np.arctan2(eyes[1][1] - eyes[0][1], eyes[1][0] - eyes[0][0])
            cx, cy = cx + net.box_raise * side * np.sin(roll), cy - net.box_raise * side * np.cos(roll)
            side *= net.box_scale
            bx, by = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
            bw, bh = min(W - bx, round(side)), min(H - by, round(side))
            if bw < 1 or bh < 1:
                continue
            faces.append(Face((bx, by, bw, bh), eyes[0], eyes[1], score))
        return faces

    def _look(self, img: np.ndarray, cx: float, cy: float, side: float, roll: float,
              net: "_BlazeNet | None" = None) -> list[Face]:
        """One model call on a square patch of ``side`` frame pixels about (cx, cy), turned by
        ``roll`` degrees so that a head rolled that much stands upright in it: its faces in frame
        pixels. The patch is cut at most twice the model's input (a face filling a 1080p still
        would otherwise be turned at full size only to be shrunk to 192 px)."""
        scale = min(1.0, 2 * (net or self._net).side / max(side, 1.0))
        s = max(8, int(round(side * scale)))
        m = cv2.getRotationMatrix2D((cx, cy), roll, scale)
        m[:, 2] += (s / 2 - cx, s / 2 - cy)
        patch = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inv = cv2.invertAffineTransform(m)
        back = lambda p: tuple(float(v) for v in inv @ (p[0], p[1], 1.0))  # noqa: E731 - patch -> frame px
        H, W = img.shape[:2]
        out = []
        for f in self._run(patch, net):
            (fx, fy), fs = back((f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2)), max(f.box[2], f.box[3]) / scale
            bx, by = max(0, round(fx - fs / 2)), max(0, round(fy - fs / 2))
            bw, bh = min(W - bx, round(fs)), min(H - by, round(fs))
            if bw >= 1 and bh >= 1:
                out.append(Face((bx, by, bw, bh), back(f.left_eye), back(f.right_eye), f.score))
        return out

    def _level(self, img: np.ndarray, face: Face) -> Face:
        """``face`` found again in a patch of ``level_context`` x its side, turned about its centre
        so that its eyes are level: on a rolled head the first call's box and eyes wander, on the
        levelled patch they are an upright face's (the crop of a head rolled 30 degrees correlates
        0.54-0.77 with the upright one after one look, 0.84-0.92 after two: docs/benchmarks.md).
        The face keeps its place if the patch shows none near its centre."""
        x, y, w, h = face.box
        cx, cy, side = x + w / 2, y + h / 2, max(w, h)
        dist = lambda f: np.hypot(f.box[0] + f.box[2] / 2 - cx, f.box[1] + f.box[3] / 2 - cy)  # noqa: E731
        near = [f for f in self._look(img, cx, cy, self.level_context * side, face.roll) if dist(f) < side / 2]
        return min(near, key=dist) if near else face

    def _tiles(self, H: int, W: int) -> list[tuple[int, int, int]]:
        """Square windows (x, y, side) over a frame longer than ``tile_above`` x its shorter side,
        overlapping by half a side: letterboxed whole, such a frame shrinks its faces towards what
        the model misses (the 49 px face of tests/test_blazeface.py's 640x320 still). None otherwise."""
        short, long_ = min(H, W), max(H, W)
        # bounded: at most 5 windows, and none on slivers (a frame claiming 30000x70 px would
        # otherwise cost hundreds of model calls: tests/test_webapp_fuzz.py sends such frames)
        if not self.tile_above or long_ <= self.tile_above * short or long_ > 4 * short or short < 32:
            return []
        n = int(np.ceil(long_ / short)) + 1
        starts = np.linspace(0, long_ - short, n).round().astype(int)
        return [(int(a), 0, short) if W > H else (0, int(a), short) for a in starts]

    def _find(self, img: np.ndarray, smallest: float = 0.0) -> list[Face]:
        """The ``max_faces`` largest faces of at least ``smallest`` px in ``img`` (the whole frame,
        and its tiles if it is long), each found again levelled where ``level_context`` says so."""
        faces = self._run(img)
        for x, y, side in self._tiles(*img.shape[:2]):
            for f in self._run(img[y:y + side, x:x + side]):
                bx, by, bw, bh = f.box
                shift = lambda p: (p[0] + x, p[1] + y)  # noqa: E731
                faces.append(Face((bx + x, by + y, bw, bh), shift(f.left_eye), shift(f.right_eye), f.score))
        if len(faces) > 1:  # one face seen in the frame and in tiles: its best-scored sighting
            xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)], np.float32)
            kept: list[int] = []
            for i in np.argsort([-f.score for f in faces], kind="stable"):
                if not kept or _iou_xyxy(xyxy[i], xyxy[kept]).max() < self.nms_iou:
                    kept.append(int(i))
            faces = [faces[i] for i in kept]
        # the second look costs a model call per face: only for faces that can be served
        faces = sorted((f for f in faces if max(f.box[2], f.box[3]) >= smallest),
                       key=lambda f: -f.box[2] * f.box[3])[:self.max_faces]
        return [self._level(img, f) for f in faces] if self.level_context else faces

    @staticmethod
    def _check(img) -> np.ndarray:
        img = np.asarray(img)
        if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
            raise ValueError(f"expected a uint8 grey (H, W) or BGR (H, W, 3) image, got {img.dtype} {img.shape}")
        if min(img.shape[:2]) < 1:
            raise ValueError(f"empty image {img.shape}")
        return img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img

    def detect_faces(self, img: np.ndarray) -> list[Face]:
        """Faces of at least ``min_size`` in a grey (or BGR) frame, largest first."""
        img = self._check(img)
        smallest = self.min_size * min(img.shape[:2])
        faces = [f for f in self._find(img, smallest) if max(f.box[2], f.box[3]) >= smallest]
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])

    def detect(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in the frame's pixels, largest first (``FaceDetector.detect``'s form)."""
        return [f.box for f in self.detect_faces(img)]

    def detect_near_faces(self, img: np.ndarray, box, search: float = 0.5, size_range: float = 1.5) -> list[Face]:
        """Faces whose centre lies in ``box`` enlarged by ``search`` x its side on each edge, of
        sides within ``size_range`` x the box's. ``box`` may be the face's last ``Face`` (the
        tracker passes it): the region is then turned by its roll, so that one model call of the
        short-range model sees the head upright (in a patch of ``near_context`` x its side, its box
        mapped to the full-range framing, the last eyes carried along), where a plain box costs a
        full-range call and the levelled second look of ``detect_faces``."""
        if search < 0 or size_range < 1:
            raise ValueError(f"need search >= 0 and size_range >= 1, got {search!r}, {size_range!r}")
        img = self._check(img)
        last = box if isinstance(box, Face) else None
        x, y, w, h = (float(v) for v in (last.box if last else box))
        side = max(w, h)
        if side < 1:
            raise ValueError(f"box must have a positive size, got {box!r}")
        cx, cy, reach = x + w / 2, y + h / 2, (0.5 + search) * side
        roll = last.roll if last else 0.0
        short = last is not None and last.left_eye is not None and last.right_eye is not None and self._near is not self._net
        patch = max(self.near_context if short else self.level_context, 1 + 2 * search) * side
        out = []
        # a known face (its last Face) is looked for by the cheaper short-range model
        for f in self._look(img, cx, cy, patch, roll, self._near if short else None):
            fx, fy = f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2
            if abs(fx - cx) <= reach and abs(fy - cy) <= reach and side / size_range <= max(f.box[2], f.box[3]) <= side * size_range:
                if short:
                    # its box, with the last eyes moved along: the short-range model's eye line is
                    # 6-8 degrees off where the full-range one's is 2-3 (bench_near.py), so the
                    # roll, and the crop's levelling, come from the whole-frame searches
                    k = max(f.box[2], f.box[3]) / side
                    move = lambda p: (fx + (p[0] - cx) * k, fy + (p[1] - cy) * k)  # noqa: E731
                    f = Face(f.box, move(last.left_eye), move(last.right_eye), f.score)
                # without a known roll, the face gets its levelled look like a whole-frame find
                out.append(f if last or not self.level_context else self._level(img, f))
        return sorted(out, key=lambda f: -f.box[2] * f.box[3])

    def detect_near(self, img: np.ndarray, box, search: float = 0.5, size_range: float = 1.5):
        return [f.box for f in self.detect_near_faces(img, box, search, size_range)]


def make_detector(name: str = DEFAULT_DETECTOR, threads: int = 1):
    """The face detector called ``name`` (``DETECTORS``); ``threads``: BlazeFace's LiteRT threads."""
    makers = {"blazeface": lambda: BlazeFaceDetector(threads=threads),
              "blazeface-full": lambda: BlazeFaceDetector(threads=threads, near_path=None),
              "haar": FaceDetector}
    if name not in makers:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {name!r}")
    return makers[name]()


def crop_face(gray: np.ndarray, box, margin: float = MARGIN, size: int = 48) -> np.ndarray:
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


def align_crop(gray: np.ndarray, box, left_eye, right_eye, margin: float = MARGIN, size: int = 48) -> np.ndarray:
    """``crop_face``'s crop, turned about the box's centre so that the line from ``left_eye`` to
    ``right_eye`` is level: a tilted head is framed as FER2013's upright faces are. Without eyes
    (None) or with both on one spot the crop is ``crop_face``'s."""
    angle = Face(box, left_eye, right_eye).roll
    if angle == 0.0:
        return crop_face(gray, box, margin, size)
    x, y, w, h = box
    s = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    cx, cy = x + w / 2, y + h / 2
    # turned at full resolution first, then shrunk like crop_face (warpAffine cannot average pixels)
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (s / 2 - cx, s / 2 - cy)
    crop = cv2.warpAffine(gray, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def crop_faces(gray: np.ndarray, boxes, margin: float = MARGIN) -> np.ndarray:
    """Crops uint8 (n, 48, 48) in a grey frame of (x, y, w, h) ``boxes``, or of ``Face``s, whose
    crops are levelled on their eyes where they have them (``align_crop``)."""
    def one(b):
        return align_crop(gray, b.box, b.left_eye, b.right_eye, margin) if isinstance(b, Face) else crop_face(gray, b, margin)
    return np.stack([one(b) for b in boxes]) if len(boxes) else np.zeros((0, 48, 48), np.uint8)


def find_faces(img: np.ndarray, detector, max_faces: int = MAX_FACES, margin: float = MARGIN, align: bool = True):
    """(boxes, crops uint8 (n, 48, 48)) for up to ``max_faces`` faces, largest first. ``align``:
    crops levelled on the eyes where the detector gives them (BlazeFace's ``detect_faces``)."""
    gray = to_gray(img)
    found = detector.detect_faces(gray) if hasattr(detector, "detect_faces") else detector.detect(gray)
    found = found[:max_faces]
    boxes = [f.box if isinstance(f, Face) else f for f in found]
    return boxes, crop_faces(gray, found if align else boxes, margin)

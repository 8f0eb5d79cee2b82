"""fer_core.api: the CLI's answers from Python, as plain data, and its refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_core.cli import main as cli


@pytest.fixture(scope="module")
def fer(tiny_models):
    from fer_core.api import load
    return load(tiny_models)


@pytest.fixture(scope="module")
def face_png(astronaut_bgr, tmp_path_factory):
    import cv2
    path = tmp_path_factory.mktemp("api") / "face.png"  # lossless: the file decodes to the array
    cv2.imwrite(str(path), cv2.resize(astronaut_bgr, (320, 320), interpolation=cv2.INTER_AREA))
    return path


def test_a_file_gives_the_clis_json_and_the_array_the_same(fer, tiny_models, face_png, capsys):
    import cv2
    faces = fer.classify_file(face_png)
    assert cli(["predict", "--models", str(tiny_models), "--json", str(face_png)]) == 0
    assert json.loads(capsys.readouterr().out) == [{"path": str(face_png), "faces": faces}]
    assert len(faces) == 1 and set(faces[0]) == {"box", "label", "probabilities", "members"}
    assert list(faces[0]["probabilities"]) == fer.labels and set(faces[0]["members"]) == set(fer.members)
    assert faces[0]["label"] == max(faces[0]["probabilities"], key=faces[0]["probabilities"].get)
    image = cv2.imread(str(face_png))
    assert fer.classify_image(image) == faces
    assert fer.classify_image(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) == faces  # detection runs on grey
    json.dumps(faces)  # plain data: no numpy values inside


def test_a_video_gives_the_clis_rows(fer, tiny_models, face_png, capsys, tmp_path):
    import cv2
    frame = cv2.imread(str(face_png))
    clip = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, frame.shape[1::-1])
    for k in range(6):
        out.write(np.roll(frame, 2 * k, axis=1))
    out.release()
    frames = list(fer.classify_video(clip, every=2))
    assert cli(["predict", "--models", str(tiny_models), "--every", "2", "--json", str(clip)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["frame"] for f in frames] == [r["frame"] for r in rows] == [0, 2, 4]
    assert [f["time"] for f in frames] == [0.0, 0.2, 0.4]
    for f, r in zip(frames, rows):
        (face,) = f["faces"]
        assert (face["label"], face["track"], face["box"]) == (r["label"], r["track"], [r[k] for k in "xywh"])


@pytest.mark.parametrize("image, message", [
    (np.zeros((48, 48), np.float32), "got an array of float32 (48, 48)"),
    (np.zeros((48, 48, 2), np.uint8), "got an array of uint8 (48, 48, 2)"),
    (np.zeros((0, 48, 3), np.uint8), "got an array of uint8 (0, 48, 3)"),
    (b"\xff\xd8", "got bytes"),
])
def test_what_is_no_image_array_is_named(fer, image, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fer.classify_image(image)


def test_a_video_or_an_unknown_file_is_named(fer, tmp_path):
    with pytest.raises(ValueError, match=r"clip\.mp4 is a video: use classify_video"):
        fer.classify_file(tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match=r"notes\.txt: unknown extension '\.txt'"):
        fer.classify_file(tmp_path / "notes.txt")

"""`python -m fer_core predict` on videos and folders: rows per face per frame (fer_core/video.py),
CSV and JSON lines, --every, the same answer as for the frame as an image, and the errors."""
from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest

from fer_core.cli import main as cli

FPS = 10


def write_video(path, frames, fps=FPS):
    import cv2
    h, w = frames[0].shape[:2]
    fourcc = {".avi": "MJPG", ".mp4": "mp4v"}[path.suffix]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(f)
    out.release()
    return path


@pytest.fixture(scope="module")
def face320(astronaut_bgr):
    import cv2
    return cv2.resize(astronaut_bgr, (320, 320), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def still(face320, tmp_path_factory):
    """12 identical frames of the astronaut (MJPG: each frame decodes to the same pixels)."""
    return write_video(tmp_path_factory.mktemp("video") / "still.avi", [face320] * 12)


@pytest.fixture(scope="module")
def moving(face320, tmp_path_factory):
    """The astronaut sliding right 3 px a frame over 15 frames, as an .mp4."""
    frames = [np.roll(face320, 3 * k, axis=1) for k in range(15)]
    return write_video(tmp_path_factory.mktemp("video") / "moving.mp4", frames)


@pytest.fixture(scope="module")
def columns(tiny_models):
    from fer_core.store import read_json
    from fer_core.labels import LABELS_7
    members = read_json(tiny_models / "ensemble.json")["members"]
    return (["path", "frame", "time", "face", "track", "x", "y", "w", "h", "label", *LABELS_7]
            + [f"vote_{m}" for m in members] + ["error"]), list(LABELS_7), members


def run(capsys, *argv):
    code = cli(["predict", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_video_csv_every_frame_labels_as_the_frame_as_an_image(tiny_models, still, columns, capsys, tmp_path):
    import cv2
    cols, labels, members = columns
    code, out, err = run(capsys, "--models", tiny_models, still)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == ",".join(cols)
    rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert [float(r["time"]) for r in rows] == pytest.approx([k / FPS for k in range(12)])
    ok, frame0 = cv2.VideoCapture(str(still)).read()
    assert ok
    cv2.imwrite(str(tmp_path / "frame0.png"), frame0)  # lossless: the same pixels as the video's frame
    assert cli(["predict", "--models", str(tiny_models), "--json", str(tmp_path / "frame0.png")]) == 0
    (face,) = json.loads(capsys.readouterr().out)[0]["faces"]
    for r in rows:
        assert (r["face"], r["track"], r["error"]) == ("0", "0", "")
        assert [int(r[k]) for k in "xywh"] == face["box"]
        assert r["label"] == face["label"]
        p = [float(r[l]) for l in labels]
        assert sum(p) == pytest.approx(1, abs=1e-3)
        # batched with other frames: float noise of another batch size, then rounding to 4 places
        assert p == pytest.approx([face["probabilities"][l] for l in labels], abs=2e-4)
        assert r["label"] == labels[int(np.argmax(p))]
        assert [r[f"vote_{m}"] for m in members] == [face["members"][m]["label"] for m in members]


def test_every_k_jsonl_to_a_file(tiny_models, still, columns, capsys, tmp_path):
    cols = columns[0]
    dest = tmp_path / "rows.jsonl"
    code, out, err = run(capsys, "--models", tiny_models, "--every", 5, "--format", "jsonl", "--out", dest, still)
    assert (code, out, err) == (0, "", "")
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 5, 10]  # 12 frames, every 5th
    assert [r["time"] for r in rows] == [0.0, 0.5, 1.0]
    for r in rows:
        assert list(r) == cols and r["error"] is None
        assert isinstance(r["x"], int) and sum(r[l] for l in columns[1]) == pytest.approx(1, abs=1e-3)


def test_json_on_a_video_or_a_folder_writes_the_jsonl_rows(tiny_models, still, face320, capsys, tmp_path):
    import cv2
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), face320)
    for target in (still, folder):
        code, jsonl, err = run(capsys, "--models", tiny_models, "--every", 4, "--format", "jsonl", target)
        assert (code, err) == (0, "")
        code, out, err = run(capsys, "--models", tiny_models, "--every", 4, "--json", target)
        assert (code, err) == (0, "") and out == jsonl
        assert [json.loads(line)["path"] for line in out.splitlines()] == (
            [str(still)] * 3 if target == still else [str(folder / "a.jpg")])


def test_a_moving_face_keeps_its_track_and_its_box_follows(tiny_models, moving, capsys):
    code, out, _ = run(capsys, "--models", tiny_models, "--every", 2, moving)
    rows = read_csv(out)
    assert code == 0 and [int(r["frame"]) for r in rows] == list(range(0, 15, 2))
    assert {r["track"] for r in rows} == {"0"}
    xs = [int(r["x"]) for r in rows]
    assert xs[-1] - xs[0] > 20 and xs == sorted(xs)  # 42 px moved: the box went along


def test_batching_frames_changes_no_number(tiny_models, moving):
    """Faces of 16 frames in one ensemble call answer as one frame per call does."""
    from fer_core.predict import Predictor
    from fer_core.video import video_frames
    pred = Predictor(tiny_models)
    one = list(video_frames(pred, moving, batch_frames=1))
    many = list(video_frames(pred, moving, batch_frames=16))
    assert len(one) == len(many) == 15
    for a, b in zip(one, many):
        assert (a["frame"], [f["box"] for f in a["faces"]], [f["label"] for f in a["faces"]]) == \
               (b["frame"], [f["box"] for f in b["faces"]], [f["label"] for f in b["faces"]])
        for fa, fb in zip(a["faces"], b["faces"]):
            assert list(fa["probabilities"].values()) == pytest.approx(list(fb["probabilities"].values()), abs=2e-4)


def test_a_folder_gives_a_row_per_face_per_file_and_keeps_the_failures(tiny_models, face320, columns, capsys, tmp_path):
    import cv2
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), face320)
    cv2.imwrite(str(folder / "b.png"), np.full((100, 100), 200, np.uint8))   # no face
    (folder / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "d.txt").write_text("notes")
    (folder / ".hidden.jpg").write_bytes(b"")                                 # left out
    (folder / "sub").mkdir()                                                  # not recursive
    code, out, err = run(capsys, "--models", tiny_models, folder)
    rows = read_csv(out)
    assert code == 1
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.jpg", "b.png", "c.jpg", "d.txt"]
    a, b, c, d = rows
    assert a["label"] in columns[1] and a["error"] == "" and a["frame"] == ""
    assert (b["label"], b["face"], b["error"]) == ("", "", "")
    assert c["label"] == "" and c["error"].startswith(f"{folder / 'c.jpg'}: not a decodable image")
    assert "unknown extension '.txt'" in d["error"]
    assert err.splitlines() == [f"error: {c['error']}", f"error: {d['error']}"]


def test_a_video_that_cannot_be_opened_names_the_file(tiny_models, still, capsys, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing like a video")
    code, out, err = run(capsys, "--models", tiny_models, "--format", "jsonl", broken, still)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert rows[0]["path"] == str(broken) and rows[0]["label"] is None
    assert rows[0]["error"].startswith(f"{broken}: ") and "video" in rows[0]["error"]
    assert err.strip() == f"error: {rows[0]['error']}"
    assert len(rows) == 1 + 12 and {r["path"] for r in rows[1:]} == {str(still)}  # the next file still read
    code, out, err = run(capsys, "--models", tiny_models, tmp_path / "nowhere.mkv")
    assert code == 1 and err.strip() == f"error: {tmp_path / 'nowhere.mkv'}: no such file"


def test_an_unknown_extension_is_an_error_for_images_too(tiny_models, face320, capsys, tmp_path):
    import cv2
    odd = tmp_path / "face.jpg.bak"
    cv2.imwrite(str(tmp_path / "face.jpg"), face320)
    odd.write_bytes((tmp_path / "face.jpg").read_bytes())
    code, out, err = run(capsys, "--models", tiny_models, odd)
    assert code == 1 and err.strip().startswith(f"error: {odd}: unknown extension '.bak'")


@pytest.mark.parametrize("argv, message", [
    (["--every", "0"], "--every must be >= 1, got 0"),
    (["--track-every", "-1"], "--track-every must be >= 0, got -1"),
    (["--json", "--format", "csv"], "--json and --format csv ask for two formats"),
    (["--whole"], "--whole is for images"),
])
def test_bad_arguments_are_refused_before_anything_is_read(tiny_models, still, capsys, argv, message):
    code, out, err = run(capsys, "--models", tiny_models, *argv, still)
    assert (code, out) == (2, "") and message in err and err.startswith("error: ")


def test_progress_on_a_terminal_only_when_the_rows_go_elsewhere(tiny_models, still, capsys, monkeypatch, tmp_path):
    from fer_core.cli import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)
    assert cli(["predict", "--models", str(tiny_models), "--out", str(tmp_path / "r.csv"), str(still)]) == 0
    assert "still.avi [####################] 12/12 frames 100%" in term.getvalue()
    assert len(read_csv((tmp_path / "r.csv").read_text())) == 12


def test_a_models_folder_that_fails_leaves_the_out_file_alone(still, capsys, tmp_path):
    dest = tmp_path / "yesterday.csv"
    dest.write_text("rows worth keeping\n")
    code, out, err = run(capsys, "--models", tmp_path / "nowhere", "--out", dest, still)
    assert code == 2 and "models folder not found" in err
    assert dest.read_text() == "rows worth keeping\n"


def test_whole_images_as_rows(tiny_models, face320, capsys, tmp_path):
    import cv2
    img = tmp_path / "crop.png"
    cv2.imwrite(str(img), face320[40:200, 100:260])
    code, out, _ = run(capsys, "--models", tiny_models, "--format", "csv", "--whole", img)
    (row,) = read_csv(out)
    assert code == 0 and [row[k] for k in ("x", "y", "w", "h")] == ["0", "0", "160", "160"]


def test_a_newline_in_a_file_name_cannot_forge_a_line(tiny_models, face320, capsys, tmp_path):
    """Plain-text output printed the name raw: 'x\\nforged.jpg face 0 ...: happy' made a line of its own."""
    import cv2
    face = tmp_path / "x\nforged.jpg face 0 box [1, 2, 3, 4]: happy.jpg"
    cv2.imwrite(str(tmp_path / "f.jpg"), face320)
    face.write_bytes((tmp_path / "f.jpg").read_bytes())
    flat = tmp_path / "y\nz.png"
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((64, 64), 200, np.uint8))
    flat.write_bytes((tmp_path / "flat.png").read_bytes())
    missing = tmp_path / "gone\r\n.jpg"
    code, out, err = run(capsys, "--models", tiny_models, face, flat, missing)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(str(face).replace("\n", "\\n") + " face 0 box ")
    assert lines[1] == str(flat).replace("\n", "\\n") + ": no face found"
    assert err.splitlines() == ["error: " + str(missing).replace("\r", "\\r").replace("\n", "\\n") + ": no such file"]
    rows = read_csv(run(capsys, "--models", tiny_models, "--format", "csv", face)[1])
    assert [r["path"] for r in rows] == [str(face)]  # CSV quotes it: the name as it is


def _special_files(tmp_path, ext):
    """{what it is: a path ending in ``ext``} for a symbolic link loop, a FIFO, /dev/zero, a dangling link."""
    import os
    loop = tmp_path / f"loop{ext}"
    os.symlink(loop.name, loop)
    fifo = tmp_path / f"pipe{ext}"
    os.mkfifo(fifo)
    zero = tmp_path / f"zero{ext}"
    os.symlink("/dev/zero", zero)
    dangling = tmp_path / f"dangling{ext}"
    os.symlink("nowhere", dangling)
    return {"a loop of symbolic links": loop, "not a regular file (a FIFO)": fifo,
            "not a regular file (a character device)": zero, "a symbolic link to a missing file": dangling}


@pytest.mark.parametrize("ext", [".jpg", ".avi"])
def test_special_files_are_named_for_what_they_are(tiny_models, capsys, tmp_path, ext):
    """A symlink loop, a FIFO and /dev/zero were all 'no such file' (Path.is_file says False)."""
    for what, path in _special_files(tmp_path, ext).items():
        code, out, err = run(capsys, "--models", tiny_models, "--format", "jsonl", path)
        (row,) = [json.loads(line) for line in out.splitlines()]
        assert code == 1 and row["error"] == f"{path}: {what}" + (
            "; only image and video files are read" if what.startswith("not a regular") else ""), row
        assert err.strip() == f"error: {row['error']}"


def test_a_folder_keeps_an_error_row_for_what_is_no_readable_file(tiny_models, face320, capsys, tmp_path):
    """Symbolic link loops (and FIFOs) inside a folder were skipped without the error row promised."""
    import cv2
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), face320)
    special = _special_files(folder, ".jpg")
    (folder / "sub").mkdir()  # not recursive: still left out
    code, out, err = run(capsys, "--models", tiny_models, folder)
    rows = read_csv(out)
    assert code == 1
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.jpg", "dangling.jpg", "loop.jpg", "pipe.jpg",
                                                           "zero.jpg"]
    by_name = {r["path"].rsplit("/", 1)[1]: r["error"] for r in rows}
    for what, path in special.items():
        assert by_name[path.name].startswith(f"{path}: {what}"), by_name
    assert len(err.splitlines()) == 4


def test_a_video_over_the_pixel_cap_is_refused_before_decoding(tiny_models, capsys, tmp_path):
    """Video frames had no pixel cap (an 8000x8000 MJPEG decoded at 1.4 GB RSS); images stop at
    fer_core.faces.MAX_PIXELS (16.7 Mpx). One 4104x4104 frame: 16.8 Mpx."""
    from fer_core.faces import MAX_PIXELS
    big = write_video(tmp_path / "big.avi", [np.zeros((4104, 4104, 3), np.uint8)])
    assert 4104 * 4104 > MAX_PIXELS
    code, out, err = run(capsys, "--models", tiny_models, "--format", "jsonl", big)
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and row["error"] == f"{big}: frames of 4104x4104 pixels, over the limit of {MAX_PIXELS} (as for images)"

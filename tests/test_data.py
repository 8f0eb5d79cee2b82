import gzip

import numpy as np
import pytest

from fer_core.data import DataError, attach_ferplus, load_fer2013, oversample, to_protocol
from fer_core.labels import LABELS_7, to_6_labels, to_6_probs


def _row(label, usage, value=7, n=2304):
    return f"{label},{' '.join([str(value)] * n)},{usage}\n"


def write_csv(path, rows, header="emotion,pixels,Usage\n", gz=False):
    text = header + "".join(rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_csv_and_gzip_give_the_same_splits(tmp_path):
    rows = [_row(3, "Training", 1), _row(0, "Training", 2), _row(6, "PublicTest", 3), _row(1, "PrivateTest", 4)]
    a = load_fer2013(write_csv(tmp_path / "a.csv", rows))
    b = load_fer2013(write_csv(tmp_path / "b.csv.gz", rows, gz=True))
    for d in (a, b):
        assert d["Training"].x.shape == (2, 48, 48) and d["Training"].x.dtype == np.uint8
        assert d["Training"].y.tolist() == [3, 0]
        assert d["PublicTest"].x[0, 5, 5] == 3 and d["PrivateTest"].y.tolist() == [1]


def test_columns_in_another_order(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("Usage,pixels,emotion\nTraining," + " ".join(["9"] * 2304) + ",5\n")
    d = load_fer2013(p)
    assert d["Training"].y.tolist() == [5] and d["Training"].x.max() == 9


@pytest.mark.parametrize("rows,header,message", [
    ([_row(3, "Training")], "emotion,pixels\n", "missing column(s) Usage"),
    ([_row(3, "Training", n=2303)], "emotion,pixels,Usage\n", "row 2: 2303 pixels, expected 2304"),
    ([_row(3, "Training"), _row(9, "Training")], "emotion,pixels,Usage\n", "row 3: unknown emotion label 9"),
    ([_row("x", "Training")], "emotion,pixels,Usage\n", "row 2: emotion 'x' is not an integer"),
    ([_row(3, "Holdout")], "emotion,pixels,Usage\n", "row 2: unknown Usage 'Holdout'"),
    ([_row(3, "Training", value=300)], "emotion,pixels,Usage\n", "row 2: pixel values outside 0..255"),
    ([], "", "empty file"),
])
def test_malformed_csv_names_file_and_row(tmp_path, rows, header, message):
    p = write_csv(tmp_path / "bad.csv", rows, header=header)
    with pytest.raises(DataError) as e:
        load_fer2013(p)
    assert message in str(e.value) and str(p) in str(e.value)


def test_binary_file_is_a_clear_error(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(DataError, match="not a readable FER2013 CSV"):
        load_fer2013(p)


def test_missing_path_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="--data PATH or set \\$FER2013_PATH"):
        load_fer2013(tmp_path / "nope.csv")


def test_image_folder_release(tmp_path):
    import cv2
    for top, cls, name, val in [("train", "happy", "Training_1.jpg", 10), ("test", "sad", "PublicTest_2.jpg", 20),
                                ("test", "angry", "PrivateTest_3.png", 30), ("test", "fear", "x.png", 40)]:
        d = tmp_path / top / cls
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / name), np.full((48, 48), val, np.uint8))
    data = load_fer2013(tmp_path)
    assert data["Training"].y.tolist() == [LABELS_7.index("happy")]
    assert data["PublicTest"].y.tolist() == [LABELS_7.index("sad")]
    # the file name keeps the split; a plain name under test/ falls back to PrivateTest
    assert sorted(data["PrivateTest"].y.tolist()) == sorted([LABELS_7.index("angry"), LABELS_7.index("fear")])


def test_image_folder_unknown_class(tmp_path):
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(DataError, match="unknown class folder 'bored'"):
        load_fer2013(tmp_path)


def test_six_class_protocol_merges_disgust_into_angry():
    assert to_6_labels(np.arange(7)).tolist() == [0, 0, 1, 2, 3, 4, 5]
    p = np.array([[0.1, 0.2, 0.1, 0.3, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(to_6_probs(p), [[0.3, 0.1, 0.3, 0.1, 0.1, 0.1]])


def test_oversampling_replicates_60_percent_of_every_class_but_happy():
    from fer_core.data import Split
    y = np.array([0] * 10 + [3] * 20 + [6] * 5)
    s = oversample(Split(np.zeros((len(y), 48, 48), np.uint8), y), 0.6, keep_class=3)
    counts = np.bincount(s.y, minlength=7)
    assert counts[0] == 16 and counts[3] == 20 and counts[6] == 8


def test_ferplus_votes_replace_training_targets(tmp_path):
    rows = [_row(3, "Training", 1), _row(0, "Training", 2), _row(6, "PublicTest", 3)]
    p = write_csv(tmp_path / "f.csv", rows)
    fp = tmp_path / "fer2013new.csv"
    fp.write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                  "Training,fer0.png,2,8,0,0,0,0,0,0,0,0\n"
                  "Training,,0,0,0,0,0,0,0,0,0,10\n"
                  "PublicTest,fer2.png,10,0,0,0,0,0,0,0,0,0\n")
    d = attach_ferplus(load_fer2013(p), fp, "votes")
    tr = d["Training"]
    assert len(tr) == 1  # the row FER+ marks as not a face is dropped
    np.testing.assert_allclose(tr.soft[0], [0, 0, 0, 0.8, 0, 0, 0.2])
    assert d["PublicTest"].y.tolist() == [6] and d["PublicTest"].soft is None
    six = to_protocol(tr, 6)
    assert six.soft.shape == (1, 6)


@pytest.mark.slow
def test_real_dataset_counts(fer_data_path):
    d = load_fer2013(fer_data_path)
    assert {k: len(v) for k, v in d.splits.items()} == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
    assert np.bincount(d["PrivateTest"].y).tolist() == [491, 55, 528, 879, 594, 416, 626]


@pytest.mark.parametrize("name", ["p.npz", "p.npz.xz"])
def test_pack_round_trip(tmp_path, name):
    from fer_core.data import pack
    rows = [_row(3, "Training", 1), _row(0, "Training", 2), _row(6, "PublicTest", 3), _row(1, "PrivateTest", 4)]
    d = load_fer2013(write_csv(tmp_path / "a.csv", rows))
    out = pack(d, tmp_path / name, splits=("Training", "PublicTest"))
    back = load_fer2013(out)
    assert set(back.splits) == {"Training", "PublicTest"}
    np.testing.assert_array_equal(back["Training"].x, d["Training"].x)
    assert back["Training"].y.tolist() == [3, 0]
    (tmp_path / "bad.npz.xz").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a packed FER2013 file"):
        load_fer2013(tmp_path / "bad.npz.xz")


def test_damaged_gzip_stream_is_a_clear_error(tmp_path):
    good = write_csv(tmp_path / "g.csv.gz", [_row(3, "Training")] * 50, gz=True).read_bytes()
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(good[:20] + bytes(b ^ 0xFF for b in good[20:200]) + good[200:])
    with pytest.raises(DataError, match="not a readable FER2013 CSV"):
        load_fer2013(bad)


def test_written_files_are_readable_by_others(tmp_path):
    import os
    import stat
    from fer_core.store import atomic_write_json
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644

"""A models folder is input: ``fer_core.store.check_models_dir`` checks ensemble.json and every
member.json (schema, member names as plain names, the weights a member would hold, counted before
anything is built) for every entry point, and each failure is one line naming the file and the field.
The CLI reads an image file only within ``fer_core.faces.MAX_IMAGE_BYTES``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fer_core import store
from fer_core.faces import MAX_IMAGE_BYTES

ROOT = store.DEFAULT_MODELS.parent
SHIPPED = store.DEFAULT_MODELS


def shipped_copy(dest):
    """The shipped ensemble's files (spec, sidecars, weights), without the pictures and logs."""
    shutil.copytree(SHIPPED, dest, ignore=shutil.ignore_patterns("*.png", "*.csv", "report.md", "detector"))
    # the cases below name these three members (one of each builder these tests tamper with), whichever ship
    edit(dest / "ensemble.json", lambda s: dict(s, members=["resnet_s", "vgg_s", "vgg_s2"], rule="average",
                                                weights=[[1 / 3] * len(s["labels"])] * 3))
    return dest


def edit(path, change):
    """Rewrite the JSON file ``path`` as ``change(obj)`` returns it."""
    obj = json.loads(path.read_text())
    path.write_text(json.dumps(change(obj)))


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


# Linux starts a child's peak RSS from its parent's at the fork (exec keeps the higher), so a child
# of a pytest grown to 1.9 GB read 1.9 GB whatever it did: a small launcher forks the measured child
# and reports that child's peak alone.
_LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run_measured(*args, timeout=300):
    """``python -m fer_core *args`` in a child: (exit status, stderr lines from fer_core, peak RSS MB)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "fer_core", *map(str, args)],
                       cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    rc, maxrss_kb = map(int, p.stdout.split())
    # TensorFlow's own start-up lines (absl, oneDNN) are not ours: keep the CLI's 'error:' lines
    lines = [l for l in p.stderr.decode(errors="replace").splitlines() if l.startswith("error:")]
    return rc, lines, maxrss_kb / 1024


def test_run_measured_reads_the_child_not_the_parent():
    """The launcher's figure is the child's own: this process holding 600 MB more does not show."""
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touched: resident
    rc, _, rss_mb = run_measured("--help")
    assert rc == 0 and rss_mb < 400, rss_mb
    del ballast


# -- ensemble.json ----------------------------------------------------------------------------------

ENSEMBLE_CASES = {
    "no members": (lambda s: without(s, "members"), "ensemble.json: members: missing"),
    "members a string": (lambda s: dict(s, members="vgg_s"), "ensemble.json: members: expected a list"),
    "members empty": (lambda s: dict(s, members=[]), "ensemble.json: members: expected a list"),
    "a path up": (lambda s: dict(s, members=["../../etc/passwd"]), r"ensemble.json: members: '\.\./\.\./etc/passwd' is not a member name"),
    "an absolute path": (lambda s: dict(s, members=["/etc/passwd"]), "ensemble.json: members: '/etc/passwd' is not a member name"),
    "a dot": (lambda s: dict(s, members=[".", "vgg_s"]), r"ensemble.json: members: '\.' is not a member name"),
    "a number": (lambda s: dict(s, members=[3]), "ensemble.json: members: 3 is not a member name"),
    "twice": (lambda s: dict(s, members=["vgg_s", "vgg_s"]), "ensemble.json: members: a member named twice"),
    "weights a string": (lambda s: dict(s, weights="abc"), "ensemble.json: weights: expected null or a list"),
    "weights with a string": (lambda s: dict(s, weights=[["x"] * 7] * 3), "ensemble.json: weights: expected null or a list"),
    "weights negative": (lambda s: dict(s, weights=[[-1] * 7] * 3), "ensemble.json: weights: expected null or a list"),
    "weights ragged": (lambda s: dict(s, weights=[[1] * 7, [1] * 6, [1] * 7]), r"ensemble.json: weights: expected 3 rows \(members\) of 7"),
    "weights too few rows": (lambda s: dict(s, weights=[[1] * 7] * 2), r"ensemble.json: weights: expected 3 rows"),
    "a bad rule": (lambda s: dict(s, rule="vote"), "ensemble.json: rule: expected one of average"),
    "a bad tta": (lambda s: dict(s, tta="sideways"), "ensemble.json: tta: tta must be one of"),
    "other labels": (lambda s: dict(s, labels=list(reversed(s["labels"]))), "ensemble.json: labels: .* are not the members'"),
    "not an object": (lambda s: [s], "ensemble.json: expected a JSON object, got list"),
}


@pytest.mark.parametrize("case", ENSEMBLE_CASES)
def test_a_bad_ensemble_json_is_one_line_naming_the_field(tmp_path, case, monkeypatch):
    change, message = ENSEMBLE_CASES[case]
    md = shipped_copy(tmp_path / "m")
    edit(md / "ensemble.json", change)
    from fer_core import models
    monkeypatch.setattr(models, "build", lambda *a, **k: pytest.fail("built before the folder was checked"))
    with pytest.raises(store.ModelsError, match=message) as e:
        store.load_ensemble(md)
    assert "\n" not in str(e.value) and str(md / "ensemble.json") in str(e.value)


def test_a_member_outside_the_folder_is_refused_by_its_name(tmp_path):
    """A name that reaches another folder's valid member (here the shipped one) is refused as a
    name, before its files are looked at."""
    md = shipped_copy(tmp_path / "m")
    for name in (os.path.relpath(SHIPPED / "vgg_s", md), str(SHIPPED / "vgg_s"), "vgg_s/../vgg_s2"):
        edit(md / "ensemble.json", lambda s: dict(s, members=["resnet_s", name, "vgg_s2"]))
        with pytest.raises(store.ModelsError, match=f"ensemble.json: members: '{name}' is not a member name"):
            store.load_ensemble(md)


# -- member.json ------------------------------------------------------------------------------------

MEMBER_CASES = {
    "no arch": (lambda s: without(s, "arch"), "member.json: arch: missing"),
    "an unknown arch": (lambda s: dict(s, arch="alexnet"), "member.json: arch: unknown architecture 'alexnet'"),
    "no kwargs": (lambda s: without(s, "kwargs"), "member.json: kwargs: missing"),
    "kwargs a list": (lambda s: dict(s, kwargs=[["filters", [8]]]), "member.json: kwargs: expected an object of vgg arguments, got list"),
    "an unknown kwarg": (lambda s: dict(s, kwargs=dict(s["kwargs"], width=3)), "member.json: kwargs: unknown argument 'width' for vgg"),
    "filters a string": (lambda s: dict(s, kwargs=dict(s["kwargs"], filters="32")), "member.json: kwargs.filters: expected a list of positive integers, got '32'"),
    "a zero filter": (lambda s: dict(s, kwargs=dict(s["kwargs"], filters=[32, 0])), r"member.json: kwargs.filters: expected a list of positive integers, got \[32, 0\]"),
    "dropout a string": (lambda s: dict(s, kwargs=dict(s["kwargs"], dense_dropout="0.4")), "member.json: kwargs.dense_dropout: expected a number >= 0"),
    "crop a bool": (lambda s: dict(s, kwargs=dict(s["kwargs"], crop=True)), "member.json: kwargs.crop: expected an integer >= 0, got True"),
    "another input": (lambda s: dict(s, kwargs=dict(s["kwargs"], input_shape=[96, 96, 3])), r"member.json: kwargs.input_shape: every caller feeds \[48, 48, 1\]"),
    "a huge dense layer": (lambda s: dict(s, kwargs=dict(s["kwargs"], dense=[2_000_000])), "member.json: kwargs: vgg with these arguments holds 535,174,567 weights, over the limit of 50,000,000"),
    "labels not a list": (lambda s: dict(s, labels="angry"), "member.json: labels: expected a list of two or more"),
    "labels for another count": (lambda s: dict(s, labels=s["labels"][:6]), "member.json: labels: 6 labels, but kwargs.num_classes is 7"),
    "train not an object": (lambda s: dict(s, train=[]), r"member.json: train: expected an object, got \[\]"),
    "a bad train tta": (lambda s: dict(s, train=dict(s["train"], tta="sideways")), "member.json: train.tta: tta must be one of"),
    "not an object": (lambda s: "vgg", "member.json: expected a JSON object, got str 'vgg'"),
    "an argument the builder refuses": (lambda s: dict(s, kwargs=dict(s["kwargs"], variant="v9")), "member.json: kwargs: vgg cannot be built with them .*variant must be"),
}


@pytest.mark.parametrize("case", MEMBER_CASES)
def test_a_bad_member_json_is_one_line_naming_the_field(tmp_path, case):
    change, message = MEMBER_CASES[case]
    md = shipped_copy(tmp_path / "m")
    edit(md / "vgg_s" / "member.json", change)
    with pytest.raises(store.ModelsError, match=message) as e:
        store.load_ensemble(md)
    assert "\n" not in str(e.value) and str(md / "vgg_s" / "member.json") in str(e.value)


def test_the_size_is_counted_from_the_sidecar_not_built(tmp_path, monkeypatch):
    """A member over the limit is refused by check_models_dir, which builds nothing; the shipped
    folder passes it as it stands."""
    from fer_core import models
    monkeypatch.setattr(models, "build", lambda *a, **k: pytest.fail("check_models_dir built a member"))
    checked = store.check_models_dir(SHIPPED)
    spec = json.loads((SHIPPED / "ensemble.json").read_text())
    assert checked.names == spec["members"] and checked.weights.shape == (len(spec["members"]), 7)
    md = shipped_copy(tmp_path / "m")
    edit(md / "resnet_s" / "member.json", lambda s: dict(s, kwargs=dict(s["kwargs"], filters=[32, 64, 128, 4096])))
    with pytest.raises(store.ModelsError, match=r"resnet_s/member.json: kwargs: resnet with these arguments holds 156,990,151 weights"):
        store.check_models_dir(md)


def test_a_member_over_the_limit_never_takes_the_memory(tmp_path, astronaut_bgr):
    """`predict` on a folder whose member.json declares a dense layer 2,000,000 wide: one line, and
    the process stays at what importing TensorFlow costs (it reached 6.8 GB building the model)."""
    import cv2
    md = shipped_copy(tmp_path / "m")
    edit(md / "vgg_s" / "member.json", lambda s: dict(s, kwargs=dict(s["kwargs"], dense=[2_000_000])))
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), astronaut_bgr)
    rc, err, rss_mb = run_measured("predict", "--models", md, img)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"error: {md / 'vgg_s' / 'member.json'}: kwargs: vgg with these "
                                               "arguments holds 535,174,567 weights") and "over the limit" in err[0], err
    assert rss_mb < 1500, rss_mb


def test_cli_reads_an_image_file_only_within_the_limit(tmp_path, astronaut_bgr):
    """A 1 GB sparse file named .jpg is refused by its size, unread (reading it took 1.7 GB RSS);
    the image beside it is still answered."""
    import cv2
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), astronaut_bgr)
    rc, err, rss_mb = run_measured("predict", "--models", SHIPPED, big, img)
    assert rc == 1
    assert err == [f"error: {big}: 1,073,741,824 bytes, over the limit of {MAX_IMAGE_BYTES:,} for an image "
                   "(fer_core.faces.MAX_IMAGE_BYTES)"]
    assert rss_mb < 1500, rss_mb


def test_read_image_file_bounds_what_it_reads(tmp_path, astronaut_jpeg):
    from fer_core.faces import ImageError, read_image_file
    p = tmp_path / "a.jpg"
    p.write_bytes(astronaut_jpeg)
    assert read_image_file(p) == astronaut_jpeg
    with pytest.raises(ImageError, match=f"{len(astronaut_jpeg):,} bytes, over the limit of 1,000"):
        read_image_file(p, max_bytes=1000)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_image_file(tmp_path)


# -- every entry point ------------------------------------------------------------------------------

def test_evaluate_checks_the_folder_first(tmp_path):
    from fer_core.evaluate import choose_ensemble, evaluate
    md = shipped_copy(tmp_path / "m")
    edit(md / "ensemble.json", lambda s: dict(s, members="vgg_s"))
    with pytest.raises(store.ModelsError, match="ensemble.json: members: expected a list"):
        evaluate(md, data=None)  # refused before any data is needed
    edit(md / "vgg_s2" / "member.json", lambda s: dict(s, kwargs=[]))
    with pytest.raises(store.ModelsError, match="vgg_s2/member.json: kwargs: expected an object"):
        choose_ensemble(md, data=None)


def test_train_all_refuses_a_bad_sidecar_in_its_folder_in_one_line(tmp_path):
    """train_all.py reads its --out folder's sidecars through the same check (here, to decide
    whether a member is done): one line, exit status 2, nothing trained."""
    from test_train import synthetic_csv
    data = synthetic_csv(tmp_path / "synth.csv", per_class=(2, 1, 1))
    md = shipped_copy(tmp_path / "m")
    edit(md / "vgg_s" / "member.json", lambda s: dict(s, kwargs=dict(s["kwargs"], width=3)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "train_all.py", "--data", str(data), "--out", str(md), "--members", "vgg_s",
                          "--no-ensemble"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert errors == [f"error: {md / 'vgg_s' / 'member.json'}: kwargs: unknown argument 'width' for vgg; known: "
                      "['bn_momentum', 'conv_dropout', 'crop', 'dense', 'dense_dropout', 'filters', 'head', "
                      "'input_shape', 'l2', 'l2_first', 'name', 'num_classes', 'variant']"], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_the_server_reports_the_check_as_the_worker_fails(tmp_path):
    """The server's worker loads through the same check: /healthz's reason is its one line."""
    import time
    from test_webapp import make_app
    md = shipped_copy(tmp_path / "m")
    edit(md / "ensemble.json", lambda s: dict(s, members=["../../etc/passwd"]))
    app = make_app(md, worker_start=True)
    inf = app.extensions["fer"].inference
    try:
        end = time.monotonic() + 120
        while inf.state != "failed" and time.monotonic() < end:
            time.sleep(0.2)
        assert inf.state == "failed"
        assert inf.last_error == (f"ModelsError: {md / 'ensemble.json'}: members: '../../etc/passwd' is not a member "
                                  "name (letters, digits, '_', '.', '-'; no '/', no leading '.' or '-'; a folder of "
                                  "the models folder)")
    finally:
        inf.close()


def test_held_cases_still_name_the_file(tmp_path):
    """What was refused well already stays so: a pickled or truncated weights file, a kernel of
    another shape, members with other labels."""
    md = shipped_copy(tmp_path / "m")
    w = md / "vgg_s" / "weights.npz"
    good = w.read_bytes()
    np.savez(w, **{"x": np.array([object()], dtype=object)})
    with pytest.raises(store.ModelsError, match="vgg_s/weights.npz: not a readable weights file"):
        store.load_member(md / "vgg_s")
    w.write_bytes(good[:len(good) // 2])
    with pytest.raises(store.ModelsError, match="vgg_s/weights.npz: not a readable weights file"):
        store.load_member(md / "vgg_s")
    w.write_bytes(good)
    with np.load(w) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in arrays if k.endswith("block1_conv1/kernel"))
    arrays[key] = np.zeros((5, 5, 1, 32), np.float16)
    np.savez(w, **arrays)
    with pytest.raises(store.ModelsError, match=f"vgg_s/weights.npz: {key} has shape"):
        store.load_member(md / "vgg_s")
    w.write_bytes(good)
    edit(md / "vgg_s2" / "member.json", lambda s: dict(s, labels=list(reversed(s["labels"]))))
    with pytest.raises(store.ModelsError, match="members disagree on labels"):
        store.load_ensemble(md)

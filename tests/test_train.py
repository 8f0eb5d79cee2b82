"""Tiny end-to-end runs: train_all -> evaluate -> predict, resuming, skipping finished members.

The data is a synthetic CSV in the Kaggle layout (so these run without the dataset); the classes
are made learnable (each class a different brightness) so that training has something to find."""
import csv
import shutil
from pathlib import Path
import json

import numpy as np
import pytest

import train_all
from fer_core import store
from fer_core.cli import main as cli
from fer_core.config import QUICK_MEMBERS, TrainConfig, member_spec
from fer_core.data import load_fer2013
from fer_core.labels import LABELS_7
from fer_core.train import CheckpointMismatch, train_member


def synthetic_csv(path, per_class=(48, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for usage, n in zip(("Training", "PublicTest", "PrivateTest"), per_class):
            for c in range(7):
                for _ in range(n):
                    img = np.clip(rng.normal(30 + 30 * c, 12, 2304), 0, 255).astype(int)
                    w.writerow([c, " ".join(map(str, img)), usage])
    return path


def crash_at_second_checkpoint(run, monkeypatch):
    """Run ``run()`` and stop it after epoch 2 by failing inside the checkpoint writer, right after
    the 2nd "last.keras" is in place and before that epoch's state.json is written."""
    class Interrupt(Exception):
        pass

    real, saves = store.atomic_save, {"n": 0}

    def flaky(path, fn):
        real(path, fn)
        if path.name == "last.keras":
            saves["n"] += 1
            if saves["n"] == 2:
                raise Interrupt()

    with monkeypatch.context() as m:
        m.setattr(store, "atomic_save", flaky)
        with pytest.raises(Interrupt):
            run()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("data") / "synth.csv")


@pytest.mark.slow
def test_train_all_quick_then_evaluate_then_predict(synth, tmp_path, astronaut_bgr, capsys):
    out = tmp_path / "models"
    assert train_all.main(["--quick", "--data", str(synth), "--out", str(out), "--members", "vgg_q,resnet_q",
                           "--epochs", "6", "--min-size", "1"]) == 0
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["chosen_on"] == "PublicTest" and set(spec["members"]) <= {"vgg_q", "resnet_q"}
    # both test-time view modes were scored on PublicTest; the stored one is the better (flip on ties)
    printed = capsys.readouterr().out
    scored = {line.split(":")[0].split()[-1]: float(line.rsplit("PublicTest ", 1)[1].split("%")[0])
              for line in printed.splitlines() if line.startswith("test-time views ")}
    assert set(scored) == {"flip", "zoom-flip"}
    assert spec["tta"] == ("zoom-flip" if scored["zoom-flip"] > scored["flip"] else "flip")
    assert 100 * spec["val_accuracy"] == pytest.approx(scored[spec["tta"]], abs=0.006)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["members"]) == {"vgg_q", "resnet_q"}
    for f in ("report.md", "confusion.png", "vgg_q/weights.npz", "vgg_q/member.json", "vgg_q/log.csv", "vgg_q/curve.png"):
        assert (out / f).is_file(), f
    side = json.loads((out / "vgg_q" / "member.json").read_text())
    assert side["train"]["epochs"] == 6 and side["labels"][1] == "disgust"
    assert side["metrics_tta"] == side["train"]["tta"] == "flip"  # each stored score names its views
    assert metrics["tta"] == metrics["chosen"]["tta"] == spec["tta"]
    assert set(side["metrics"]) == {"PublicTest", "PrivateTest"} and set(side["metrics"]["PrivateTest"]) == {"7", "6"}
    capsys.readouterr()

    # evaluate recomputes from the weights: the numbers match what train_all stored
    assert cli(["evaluate", "--data", str(synth), "--models", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for s in ("PublicTest", "PrivateTest"):
        assert again["ensemble"][s]["7"]["accuracy"] == pytest.approx(metrics["ensemble"][s]["7"]["accuracy"])
    # the data is learnable: the ensemble must beat chance (1/7) clearly
    assert again["ensemble"]["PrivateTest"]["7"]["accuracy"] > 0.3
    assert cli(["evaluate", "--data", str(synth), "--models", str(out), "--split", "PrivateTest", "--classes", "6"]) == 0
    table = capsys.readouterr().out
    assert "PrivateTest, 6 classes" in table and "| vgg_q |" in table and "Disgust" not in table

    import cv2
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), astronaut_bgr)
    assert cli(["predict", "--models", str(out), "--json", str(img)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res[0]["faces"]) == 1 and set(res[0]["faces"][0]["members"]) == set(spec["members"])

    # a second run skips the finished members
    assert train_all.main(["--quick", "--data", str(synth), "--out", str(out), "--members", "vgg_q",
                           "--epochs", "6", "--min-size", "1", "--no-ensemble"]) == 0
    assert "[vgg_q] done already" in capsys.readouterr().out


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_last_epoch(synth, tmp_path, monkeypatch):
    data = load_fer2013(synth)
    spec = member_spec("vgg_q")
    cfg = TrainConfig(**dict(spec.train, epochs=3, schedule="plateau", early_stopping=0))

    crash_at_second_checkpoint(lambda: train_member("vgg_q", spec, cfg, data, tmp_path, verbose=0), monkeypatch)
    state = json.loads((tmp_path / "vgg_q" / "ckpt" / "state.json").read_text())
    assert state["epoch"] == 1  # the state of epoch 2 was not written: the crash came first
    # ...but its checkpoint was: resuming trusts the checkpoint's step count, so epoch 2 is not run twice
    seen = []
    import keras
    real_fit = keras.Model.fit

    def spy_fit(self, *a, **kw):
        seen.append(kw.get("initial_epoch"))
        return real_fit(self, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(keras.Model, "fit", spy_fit)
        side = train_member("vgg_q", spec, cfg, data, tmp_path, verbose=0)
    assert seen == [2]
    log = list(csv.DictReader(open(tmp_path / "vgg_q" / "log.csv")))
    assert [int(r["epoch"]) for r in log] == [1, 3]  # epoch 2's row died with the crash; its weights did not
    assert side["trained"]["epochs"] == 3
    # asking a finished member for more epochs continues it; the sidecar says what really ran
    side = train_member("vgg_q", spec, TrainConfig(**dict(cfg.to_dict(), epochs=4)), data, tmp_path, verbose=0)
    assert side["trained"]["epochs"] == 4 and side["train"]["epochs"] == 4
    # another recipe does not resume this checkpoint (here: the 6-class protocol): refused, naming the
    # field, with nothing touched; once the checkpoint is deleted, the new recipe trains afresh
    weights = (tmp_path / "vgg_q" / "weights.npz").read_bytes()
    six = TrainConfig(**dict(cfg.to_dict(), epochs=1, classes=6))
    with pytest.raises(CheckpointMismatch, match=r"state.json: .*classes: 7 -> 6.*delete .*vgg_q/ckpt"):
        train_member("vgg_q", spec, six, data, tmp_path, verbose=0)
    assert (tmp_path / "vgg_q" / "weights.npz").read_bytes() == weights
    shutil.rmtree(tmp_path / "vgg_q" / "ckpt")
    side = train_member("vgg_q", spec, six, data, tmp_path, verbose=0)
    assert side["trained"]["epochs"] == 1 and len(side["labels"]) == 6


@pytest.mark.slow
def test_a_worse_retrain_does_not_replace_the_member(synth, tmp_path):
    """finalize_member keeps the member already in the folder when the new weights score lower on
    PublicTest; they stay in ckpt/ for a look."""
    from fer_core.models import build
    from fer_core.train import finalize_member

    data = load_fer2013(synth)
    spec = member_spec("vgg_q")
    cfg = TrainConfig(**dict(spec.train, epochs=4, augment=False, batch_size=16))  # learns in seconds
    side = train_member("vgg_q", spec, cfg, data, tmp_path, verbose=0)
    weights = (tmp_path / "vgg_q" / "weights.npz").read_bytes()
    assert side["metrics"]["PublicTest"]["7"]["accuracy"] > 0.5  # learnable classes: far above chance
    kwargs = dict(spec.kwargs, num_classes=7, name="vgg_q")
    untrained = build("vgg", **kwargs)
    kept = finalize_member("vgg_q", "vgg", kwargs, TrainConfig(**dict(cfg.to_dict(), seed=9)), untrained, data,
                           tmp_path / "vgg_q", {"epoch": 0})
    assert kept["metrics"] == side["metrics"] and (tmp_path / "vgg_q" / "weights.npz").read_bytes() == weights
    assert (tmp_path / "vgg_q" / "ckpt" / "candidate.npz").is_file()


def test_unknown_member_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown member 'nope'"):
        train_all.member_names("vgg_s,nope", quick=False)
    assert train_all.member_names(None, quick=True) == list(QUICK_MEMBERS)
    assert train_all.member_names("report", quick=False)[0] == "vgg0"


def test_a_plain_run_trains_what_ships_and_nothing_of_it_again(tmp_path):
    """No --members: the shipped ensemble's members, each after the member it continues from; on
    this checkout every one of them is done already (its sidecar's settings are the registry's), so
    a plain run only chooses and scores the ensemble again."""
    from fer_core import store
    from fer_core.config import GROUPS, member_spec

    shipped = store.read_json(store.DEFAULT_MODELS / "ensemble.json")["members"]
    names = train_all.member_names(None, quick=False)
    parents = {member_spec(n).train.get("init_from") for n in names} - {None}
    assert set(names) == set(shipped) | parents and len(names) == len(set(names))
    assert all(names.index(member_spec(n).train["init_from"]) < names.index(n)
               for n in names if member_spec(n).train.get("init_from"))  # a parent trains first
    for n in names:
        cfg = member_spec(n).train_config()
        assert cfg.same_as(store.read_sidecar(store.DEFAULT_MODELS / n)["train"]), n
    assert "shipped" not in GROUPS and set(names) <= set().union(*GROUPS.values())  # experiments: by name only
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["vgg_s2_l3", "resnet_s"]}))
    assert train_all.shipped_members(tmp_path) == ["vgg_s2", "vgg_s2_l2", "vgg_s2_l3", "resnet_s"]
    with pytest.raises(ValueError, match=f"no {tmp_path / 'nothing'}/ensemble.json"):
        train_all.shipped_members(tmp_path / "nothing")
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": "vgg_s"}))
    with pytest.raises(store.ModelsError, match="ensemble.json: members: expected a list"):
        train_all.shipped_members(tmp_path)


def test_an_unknown_member_is_refused_before_the_data_is_read(capsys):
    with pytest.raises(SystemExit):
        train_all.parse_args(["--members", "vgg_s,nosuch", "--data", "/nonexistent.csv"])
    assert "unknown member 'nosuch'" in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_with_other_epochs_decays_over_the_new_total(synth, tmp_path, monkeypatch):
    """A cosine run cut short and resumed with fewer epochs must still anneal by its new last epoch
    (the checkpoint's optimizer carried the old 4-epoch schedule: the LR stayed half-way up)."""
    data = load_fer2013(synth)
    spec = member_spec("vgg_q")
    cfg = TrainConfig(**dict(spec.train, epochs=4, warmup_epochs=0))
    assert cfg.schedule == "cosine"

    crash_at_second_checkpoint(lambda: train_member("vgg_q", spec, cfg, data, tmp_path, verbose=0), monkeypatch)
    side = train_member("vgg_q", spec, TrainConfig(**dict(cfg.to_dict(), epochs=3)), data, tmp_path, verbose=0)
    assert side["trained"]["epochs"] == 3
    log = list(csv.DictReader(open(tmp_path / "vgg_q" / "log.csv")))
    assert int(log[-1]["epoch"]) == 3
    # the floor of a 3-epoch cosine, not the 4-epoch schedule's 15 % left at step 3
    assert float(log[-1]["lr"]) == pytest.approx(0.01 * cfg.lr, rel=1e-3)


@pytest.mark.slow
def test_a_resumed_run_continues_the_augmentation_stream(synth, tmp_path):
    """Stopping after epoch 1 and resuming must leave the augmentation layers where an uninterrupted
    run leaves them (a .keras checkpoint restarts them: epoch 2 would replay epoch 1's augmentations)."""
    data = load_fer2013(synth)
    spec = member_spec("vgg_q")
    cfg = TrainConfig(**dict(spec.train, epochs=2))
    assert cfg.augment
    train_member("vgg_q", spec, cfg, data, tmp_path / "straight", verbose=0)
    train_member("vgg_q", spec, TrainConfig(**dict(cfg.to_dict(), epochs=1)), data, tmp_path / "resumed", verbose=0)
    train_member("vgg_q", spec, cfg, data, tmp_path / "resumed", verbose=0)

    def rng(run):
        return json.loads((tmp_path / run / "vgg_q" / "ckpt" / "state.json").read_text())["augment_rng"]

    assert len(rng("straight")) > 5 and rng("straight") == rng("resumed")  # 5 augmentation layers + dropout


@pytest.mark.slow
def test_a_warm_restart_starts_from_the_parents_shipped_weights(synth, tmp_path):
    """init_from: a new cosine cycle begins at the parent's float16 weights (fresh optimizer), and the
    sidecar names exactly which weights those were."""
    import hashlib

    data = load_fer2013(synth)
    spec = member_spec("vgg_q")
    train_member("vgg_q", spec, TrainConfig(**dict(spec.train, epochs=2)), data, tmp_path, verbose=0)
    parent = tmp_path / "vgg_q" / "weights.npz"
    # a learning rate of ~0 keeps the kernels where they start (batch-norm statistics still move)
    child = TrainConfig(**dict(spec.train, epochs=1, lr=1e-9, init_from="vgg_q", seed=5))
    side = train_member("vgg_q_c2", spec, child, data, tmp_path, verbose=0)
    assert side["train"]["init_from"] == "vgg_q"
    assert side["init"] == {"member": "vgg_q", "sha256": hashlib.sha256(parent.read_bytes()).hexdigest()}
    with np.load(parent) as p, np.load(tmp_path / "vgg_q_c2" / "weights.npz") as c:
        kernels = [k for k in p.files if k.endswith("kernel")]
        assert kernels and set(p.files) == set(c.files)
        for k in kernels:
            np.testing.assert_allclose(c[k], p[k], atol=2e-3)
    # without init_from the same member starts from a fresh initialisation
    fresh = train_member("vgg_q_f", spec, TrainConfig(**dict(child.to_dict(), init_from=None)), data, tmp_path, verbose=0)
    assert "init" not in fresh
    with np.load(parent) as p, np.load(tmp_path / "vgg_q_f" / "weights.npz") as f:
        assert not np.allclose(f[kernels[0]], p[kernels[0]], atol=2e-3)
    # a parent that is not there is an error that names the file, before any training
    with pytest.raises(store.ModelsError, match="nope/weights.npz"):
        train_member("vgg_q_c3", spec, TrainConfig(**dict(child.to_dict(), init_from="nope")), data, tmp_path, verbose=0)


def test_configs_stored_by_older_versions_are_the_same_recipe():
    """A sidecar or checkpoint config written before the views were a mode ("tta": true) or before a
    field existed (init_from) is the same recipe: the shipped members count as done, a run in progress
    resumes. Another value of any field but the ignored ones is another recipe."""
    from fer_core.config import TrainConfig
    shipped = json.loads((store.DEFAULT_MODELS / "vgg_s" / "member.json").read_text())["train"]
    assert shipped["tta"] is True and "init_from" not in shipped
    cfg = member_spec("vgg_s").train_config(epochs=40)
    assert cfg.same_as(shipped)
    assert not member_spec("vgg_s").train_config(epochs=60).same_as(shipped)  # 60 epochs asked, 40 done
    assert member_spec("vgg_s").train_config(epochs=60).same_as(shipped, ignore=("epochs",))
    # the shipped first cycles are the registry's recipes: a plain `python train_all.py` skips them
    for name in ("vgg_s", "vgg_s2", "resnet_s"):
        assert member_spec(name).train_config().same_as(store.read_sidecar(store.DEFAULT_MODELS / name)["train"]), name
    assert not cfg.same_as(dict(shipped, tta="zoom-flip"))
    assert not cfg.same_as(dict(shipped, lr=0.02)) and not cfg.same_as(None)
    assert not cfg.same_as(dict(shipped, optimizer="rmsprop"))  # unreadable: not this recipe
    assert TrainConfig.from_dict(dict(shipped, unknown=1)) == cfg


def test_sidecars_name_the_views_of_their_metrics(tmp_path):
    """A sidecar from before ``metrics_tta`` is read with the views its config scored with, placed
    where a sidecar written now has it; the shipped ones carry it."""
    old = {"name": "m", "arch": "vgg", "kwargs": {"filters": [8]}, "labels": list(LABELS_7),
           "train": {"epochs": 3, "tta": True}, "metrics": {"PublicTest": {}}}
    store.atomic_write_json(tmp_path / "m" / "member.json", old)
    side = store.read_sidecar(tmp_path / "m")
    assert side["metrics_tta"] == "flip"
    assert list(side) == ["name", "arch", "kwargs", "labels", "train", "metrics_tta", "metrics"]
    store.atomic_write_json(tmp_path / "m" / "member.json", dict(old, train={"tta": "none"}))
    assert store.read_sidecar(tmp_path / "m")["metrics_tta"] == "none"
    from fer_core.tta import of
    shipped = store.DEFAULT_MODELS
    for n in store.list_members(shipped):
        side = json.loads((shipped / n / "member.json").read_text())
        assert side["metrics_tta"] == of(side["train"])
    assert json.loads((shipped / "metrics.json").read_text())["tta"] == of(store.read_json(shipped / "ensemble.json"))


class _Terminal:
    """A text stream that says it is a terminal, to see what an interactive user sees on stderr."""

    def __init__(self):
        self.parts = []

    def isatty(self):
        return True

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass


def test_evaluate_progress_is_shown_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    """A progress line on a terminal (every image scored by the ensemble and by the member left out
    of it), nothing on a pipe; chunking the scoring for it changes no number."""
    import re
    import shutil
    import sys
    from conftest import build_models_dir
    from fer_core import evaluate as ev
    from fer_core.cli import Progress

    md = build_models_dir(tmp_path / "m")
    shutil.copytree(build_models_dir(tmp_path / "other", names=("inc_q",)) / "inc_q", md / "inc_q")
    data = synthetic_csv(tmp_path / "d.csv", per_class=(1, 4, 4))  # 28 + 28 test images
    assert cli(["evaluate", "--data", str(data), "--models", str(md), "--json"]) == 0
    piped = capsys.readouterr()
    assert piped.err == ""  # pytest's capture is not a terminal: no progress noise
    whole = json.loads(piped.out)
    assert set(whole["members"]) == {"vgg_q", "resnet_q", "inc_q"}

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(ev, "CHUNK", 8)
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)  # draw every step, however fast
    assert cli(["evaluate", "--data", str(data), "--models", str(md), "--json"]) == 0
    err = "".join(term.parts)
    assert f"reading {data} ..." in err and "loading the models ..." in err
    # the faces of both splits, each scored by the ensemble and again by inc_q: 56 faces, 112 scorings
    line = r"\rscoring PublicTest \(28\) and PrivateTest \(28\) \[[#.]{20}\] "
    counts = [int(c) for c in re.findall(line + r"(\d+)/112 faces \(56 faces x 2 models\) \d+% \d+ s", err)]
    # 56 images by the two-member ensemble, then again by inc_q, 8 at a time (4 chunks per split)
    assert counts == [0, 8, 16, 24, 28, 36, 44, 52, 56, 64, 72, 80, 84, 92, 100, 108, 112]
    assert re.search(line.replace("[#.]", "#") + r"112/112 faces \(56 faces x 2 models\) 100% \d+ s +\n$", err)
    assert re.search(r"8/112 faces \(56 faces x 2 models\) 7% \d+ s, ~\d+ s left", err)
    chunked = json.loads(capsys.readouterr().out)
    for s in ("PublicTest", "PrivateTest"):
        for n in whole["members"]:
            assert chunked["members"][n][s]["7"]["accuracy"] == pytest.approx(whole["members"][n][s]["7"]["accuracy"])
        assert chunked["ensemble"][s]["7"]["recall"] == pytest.approx(whole["ensemble"][s]["7"]["recall"])


def test_predict_json_keeps_failed_files_with_their_error(tiny_models, astronaut_bgr, tmp_path, capsys):
    import cv2
    good = tmp_path / "face.png"
    cv2.imwrite(str(good), astronaut_bgr)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    assert cli(["predict", "--models", str(tiny_models), "--json", str(empty), str(good), str(missing)]) == 1
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert [r["path"] for r in res] == [str(empty), str(good), str(missing)]  # every file, in order
    assert res[0] == {"path": str(empty), "error": f"{empty}: empty image"}
    assert set(res[2]) == {"path", "error"} and "no such file" in res[2]["error"]
    assert "error" not in res[1] and len(res[1]["faces"]) == 1
    assert out.err.splitlines() == [f"error: {res[0]['error']}", f"error: {res[2]['error']}"]


def test_train_all_help_says_one_thing_about_ferplus(capsys):
    with pytest.raises(SystemExit):
        train_all.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "needs --ferplus" not in text
    assert "--ferplus CSV FER+ fer2013new.csv for --target ferplus-* (default: fer2013new.csv beside the FER2013 file)" in text
    assert "only check that the pipeline runs" in text
    # --ferplus without a FER+ target would be ignored: refused, naming what was given
    with pytest.raises(SystemExit) as e:
        train_all.parse_args(["--ferplus", "votes.csv"])
    assert e.value.code == 2
    assert "--ferplus votes.csv is read only with --target ferplus-majority or ferplus-votes (got --target fer2013)" \
        in capsys.readouterr().err
    assert train_all.parse_args(["--ferplus", "votes.csv", "--target", "ferplus-votes"]).ferplus == "votes.csv"

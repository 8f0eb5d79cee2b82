"""Training one member: resumable, logged per epoch, checkpointed on PublicTest accuracy.

The network sees raw 0..255 grey images; augmentation runs as Keras layers in front of it during
training only, so the same code runs on TensorFlow, JAX or PyTorch.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import plots, store
from .config import MemberSpec, TrainConfig
from .data import FerData, Split, to_protocol, oversample
from .labels import labels_for
from .metrics import SCORED_SPLITS, both_protocols
from .predict import probabilities


def _keras():
    import keras
    return keras


def gpu_available() -> bool:
    keras = _keras()
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "tensorflow":
            import tensorflow as tf
            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch
            return torch.cuda.is_available()
    except Exception:
        return False
    return False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def training_precision(precision: str) -> str:
    """The Keras dtype policy that ``TrainConfig.precision`` means on this machine."""
    if precision == "auto":
        return "mixed_bfloat16" if gpu_available() or cpu_has_bf16() else "float32"
    if precision not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'mixed_bfloat16', got {precision!r}")
    return precision


def augmenter(seed: int = 0):
    """Flip, shift (±10%), rotation (±10°), zoom (±10%), random erasing: the crop/flip/rotate family
    that every ~73% FER2013 model trains with."""
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        L.RandomFlip("horizontal", seed=seed),
        L.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
        L.RandomRotation(10 / 360, fill_mode="nearest", seed=seed + 2),
        L.RandomZoom(0.1, fill_mode="nearest", seed=seed + 3),
        L.RandomErasing(factor=0.5, scale=(0.02, 0.15), value_range=(0, 255), seed=seed + 4),
    ], name="augment")


def cosine_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to 1 % of ``cfg.lr`` at the end of ``cfg.epochs``."""
    keras = _keras()
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr * (0.1 if warm else 1.0), decay_steps=max(1, total - warm),
        alpha=0.01, warmup_target=cfg.lr if warm else None, warmup_steps=warm)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    keras = _keras()
    lr = cosine_schedule(cfg, steps_per_epoch) if cfg.schedule == "cosine" else cfg.lr
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay or 1e-4)
    return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay or None)


def training_model(net, cfg: TrainConfig, steps_per_epoch: int):
    """``net`` behind the recipe's augmentation, compiled with its optimizer and loss: what ``fit`` runs
    (training, the registry's smoke check and the training benchmark alike)."""
    keras = _keras()
    inputs = keras.Input(shape=(48, 48, 1), name="image")
    x = augmenter(cfg.seed)(inputs) if cfg.augment else inputs
    wrapper = keras.Model(inputs, net(x), name=f"{net.name}_train")
    wrapper.compile(optimizer=make_optimizer(cfg, steps_per_epoch),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                    metrics=["accuracy"])
    return wrapper


def _targets(split: Split, classes: int) -> np.ndarray:
    if split.soft is not None:
        return split.soft.astype(np.float32)
    return np.eye(classes, dtype=np.float32)[split.y]


def _seed_generators(model) -> list:
    """The random-state variables of the augmentation and dropout layers, in layer order (a .keras
    checkpoint does not restore them: a resumed run would replay epoch 1's flips, shifts, erasures
    and dropout)."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _rng_states(model) -> list:
    return [np.asarray(v).tolist() for v in _seed_generators(model)]


def _restore_rng(model, states: list | None) -> None:
    gens = _seed_generators(model)
    if not states:
        return  # a checkpoint from before the states were saved
    if len(states) != len(gens):
        print(f"[{model.name}] {len(states)} saved random states for {len(gens)} layers: not restored",
              file=sys.stderr, flush=True)
        return
    for v, s in zip(gens, states):
        v.assign(np.asarray(s, dtype=v.dtype))


def _fresh_state() -> dict:
    return {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "wait": 0, "plateau_wait": 0,
            "done": False, "seconds": 0.0, "history": []}


class _Progress:
    """Per-epoch bookkeeping that survives interruption: best PublicTest accuracy, early stopping
    and plateau counters, the CSV log. Saved to ckpt/state.json after every epoch."""

    def __init__(self, out: Path, cfg: TrainConfig):
        self.out, self.cfg = out, cfg
        self.path = out / "ckpt" / "state.json"
        self.state = _fresh_state()
        if self.path.is_file():
            self.state.update(json.loads(self.path.read_text()))
            saved = self.state.get("config")
            if saved is not None and (diff := cfg.differences(saved, ignore=RESUMABLE_FIELDS)):
                # A checkpoint of another recipe must not be resumed, nor hours of training thrown away
                # because a registry entry changed: the user decides.
                raise CheckpointMismatch(
                    f"{self.path}: this checkpoint was made with another config ({'; '.join(diff)}); resume "
                    f"with the config it was made with, or delete {out / 'ckpt'} to start afresh")
        self.state["config"] = cfg.to_dict()

    def save(self):
        store.atomic_write_json(self.path, self.state)

    def write_log(self):
        hist = self.state["history"]
        if not hist:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(hist[0]))
        w.writeheader()
        w.writerows(hist)
        store.atomic_write_bytes(self.out / "log.csv", buf.getvalue().encode())


# The one field a checkpoint may continue under: more (or fewer) epochs rebuild the cosine over the
# new total (see _fit).
RESUMABLE_FIELDS = ("epochs",)


class CheckpointMismatch(ValueError):
    """A checkpoint whose config is not the one asked for."""


def _make_callback(progress: _Progress, net, wrapper, cfg: TrainConfig, t0_holder: list):
    keras = _keras()

    class Resumable(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            t0_holder[0] = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            st = progress.state
            val = float(logs.get("val_accuracy", 0.0))
            opt = wrapper.optimizer
            lr = float(np.asarray(opt.learning_rate))
            st["seconds"] += time.time() - t0_holder[0]
            st["history"].append({"epoch": epoch + 1, "loss": round(float(logs.get("loss", 0)), 5),
                                  "accuracy": round(float(logs.get("accuracy", 0)), 5),
                                  "val_loss": round(float(logs.get("val_loss", 0)), 5),
                                  "val_accuracy": round(val, 5), "lr": lr,
                                  "seconds": round(time.time() - t0_holder[0], 1)})
            if val > st["best_val"]:
                st.update(best_val=val, best_epoch=epoch + 1, wait=0, plateau_wait=0)
                store.atomic_save(progress.out / "ckpt" / "best.weights.h5", net.save_weights)
            else:
                st["wait"] += 1
                st["plateau_wait"] += 1
                if cfg.schedule == "plateau" and st["plateau_wait"] >= cfg.plateau_patience:
                    opt.learning_rate = lr * cfg.plateau_factor
                    st["plateau_wait"] = 0
                if cfg.early_stopping and st["wait"] >= cfg.early_stopping:
                    self.model.stop_training = True
            st["epoch"] = epoch + 1
            st["augment_rng"] = _rng_states(wrapper)
            store.atomic_save(progress.out / "ckpt" / "last.keras", wrapper.save)
            progress.save()
            progress.write_log()

    return Resumable()


def train_member(name: str, spec: MemberSpec, cfg: TrainConfig, data: FerData, out_dir: Path,
                 verbose: int | None = None) -> dict:
    """Train (or resume) member ``name`` into ``out_dir/name``; write its compact weights and sidecar.

    Returns the sidecar. A member whose sidecar says it is done is not retrained.
    """
    keras = _keras()
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress(out, cfg)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2

    keras.utils.set_random_seed(cfg.seed)
    precision = training_precision(cfg.precision)
    try:
        net, state = _fit(name, spec, cfg, data, out, out_dir, progress, verbose, precision)
    finally:
        # Scoring, export and serving build float32 models: the policy is global, so put it back.
        keras.mixed_precision.set_global_policy("float32")
    state["precision"] = precision
    teacher = state.pop("_teacher", None)
    return finalize_member(name, spec.arch, dict(spec.kwargs, num_classes=cfg.classes, name=name), cfg,
                           net, data, out, state, teacher)


def _fit(name, spec, cfg, data, out, out_dir, progress, verbose, precision):
    """Build or resume the training model and fit it under the dtype policy ``precision``; returns
    (net with its best weights, state)."""
    keras = _keras()
    train = to_protocol(data["Training"], cfg.classes)
    teacher = None
    if cfg.teacher:
        from . import distill
        q, teacher = distill.teacher_probabilities(cfg.teacher, train.x, cfg.classes, Path(out_dir) / "_teacher")
        train = Split(train.x, train.y, distill.mix(_targets(train, cfg.classes), q, cfg.distill))
    if cfg.oversample:
        train = oversample(train, cfg.oversample, keep_class=labels_for(cfg.classes).index("happy"), seed=cfg.seed)
    val = to_protocol(data["PublicTest"], cfg.classes)
    x_tr = train.x.astype(np.float32)[..., None]
    y_tr = _targets(train, cfg.classes)
    x_va = val.x.astype(np.float32)[..., None]
    y_va = _targets(val, cfg.classes)
    steps = math.ceil(len(x_tr) / cfg.batch_size)

    kwargs = dict(spec.kwargs, num_classes=cfg.classes, name=name)
    # Only the member trains in ``precision``: the teacher's targets above are float32, as served.
    keras.mixed_precision.set_global_policy(precision)
    last = out / "ckpt" / "last.keras"
    if last.is_file() and progress.state["epoch"] > 0:
        wrapper = keras.saving.load_model(last)
        net = wrapper.get_layer(name)
        # The checkpoint is written before state.json: after a crash between the two, the
        # optimizer's step count says how many epochs the weights really have.
        done = int(np.asarray(wrapper.optimizer.iterations)) // steps
        if done != progress.state["epoch"]:
            progress.state["epoch"] = done
            progress.state["history"] = progress.state["history"][:done]
        if cfg.schedule == "cosine":
            # The checkpoint's optimizer carries the schedule it was made with; a run resumed with
            # other epochs must decay over the epochs asked for now (else a 40-epoch cosine cut to 30
            # never anneals), so the schedule is rebuilt from this config.
            wrapper.optimizer.learning_rate = cosine_schedule(cfg, steps)
        # Continue the augmentation and dropout streams where the last state.json left them (one epoch
        # behind after a crash between the two writes), and shuffle with a seed of its own rather than
        # epoch 1's (spaced so that another seed's member resumed elsewhere does not share it).
        _restore_rng(wrapper, progress.state.get("augment_rng"))
        keras.utils.set_random_seed(cfg.seed * 100_003 + done)
        print(f"[{name}] resuming after epoch {progress.state['epoch']}", flush=True)
    else:
        from .models import build
        net = build(spec.arch, **kwargs)
        if cfg.init_from:
            parent = Path(out_dir) / cfg.init_from / "weights.npz"
            store.load_member_weights(net, parent)  # raises ModelsError naming the file or the mismatch
            print(f"[{name}] starting from {parent}", flush=True)
        wrapper = training_model(net, cfg, steps)
    t0 = [time.time()]
    # Finished means: all epochs run, or early stopping fired. A config asking for more epochs than a
    # finished run had continues from its checkpoint (optimizer state kept, cosine over the new total).
    stopped = progress.state["epoch"] >= cfg.epochs or (
        cfg.early_stopping and progress.state["wait"] >= cfg.early_stopping)
    if not stopped:
        wrapper.fit(x_tr, y_tr, batch_size=cfg.batch_size, epochs=cfg.epochs,
                    initial_epoch=progress.state["epoch"], validation_data=(x_va, y_va),
                    callbacks=[_make_callback(progress, net, wrapper, cfg, t0)], verbose=verbose)
    progress.state["done"] = True
    progress.save()
    net.load_weights(out / "ckpt" / "best.weights.h5")
    return net, dict(progress.state, _teacher=teacher)


def finalize_member(name, arch, kwargs, cfg: TrainConfig, net, data: FerData, out: Path, state: dict,
                    teacher: dict | None = None) -> dict:
    """Store the best weights as float16 and a sidecar with metrics on PublicTest and PrivateTest.

    A member already in ``out`` that scores higher on PublicTest (same views and classes) is kept: its
    files are not replaced, the new weights stay in ``ckpt/``, and its sidecar is returned."""
    from .models import build
    candidate = out / "ckpt" / "candidate.npz"
    store.save_member_weights(net, candidate)
    check = build(arch, **kwargs)  # score what ships: the float16 weights, not the float32 ones
    store.load_member_weights(check, candidate)
    metrics = {}
    for split in SCORED_SPLITS:
        if split in data.splits:
            s = data[split]
            metrics[split] = both_protocols(s.y, probabilities(check, s.x, cfg.tta))
    if "PublicTest" in metrics and (out / "weights.npz").is_file():
        old = build(arch, **kwargs)
        try:
            store.load_member_weights(old, out / "weights.npz")
        except store.ModelsError:  # another architecture: nothing comparable to keep
            old = None
        if old is not None:
            pt = data["PublicTest"]
            key = str(cfg.classes) if str(cfg.classes) in metrics["PublicTest"] else "6"
            before = both_protocols(pt.y, probabilities(old, pt.x, cfg.tta))[key]["accuracy"]
            after = metrics["PublicTest"][key]["accuracy"]
            if after < before:
                print(f"[{name}] PublicTest {100 * after:.2f}% ({cfg.tta}) is below the {100 * before:.2f}% of the "
                      f"member already in {out}: kept it; the new weights stay in {candidate}", flush=True)
                return store.read_sidecar(out)
    os.replace(candidate, out / "weights.npz")
    import keras
    side = {"name": name, "arch": arch, "kwargs": kwargs, "labels": list(labels_for(cfg.classes)),
            "classes": cfg.classes, "params": int(net.count_params()), "train": cfg.to_dict(),
            "trained": {"epochs": state.get("epoch"), "best_epoch": state.get("best_epoch"),
                        "best_val_accuracy_no_tta": state.get("best_val"),
                        "minutes": round(state.get("seconds", 0) / 60, 1),
                        "backend": keras.backend.backend(), "data": data.source,
                        "precision": state.get("precision", "float32")},
            # A warm restart names the exact weights it started from.
            **({"init": {"member": cfg.init_from,
                         "sha256": _sha256(out.parent / cfg.init_from / "weights.npz")}} if cfg.init_from else {}),
            # A distilled member names the ensemble it learned from (members, views, digest).
            **({"teacher": teacher} if teacher else {}),
            "metrics_tta": cfg.tta, "metrics": metrics}
    store.atomic_write_json(out / "member.json", side)
    try:
        plots.curves_png(out / "log.csv", out / "curve.png", title=name)
    except Exception as e:  # a picture must never lose a trained member
        print(f"[{name}] could not draw curves: {e}", file=sys.stderr)
    return side


def _sha256(path: Path) -> str | None:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

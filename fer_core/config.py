"""Training configuration and the member registry.

One dataclass per job, every default visible with its reason; the config is written next to what it
produced (the member's sidecar), so any weights can be traced to how they were made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .tta import TTA, resolve as resolve_tta


PRECISIONS = ("auto", "float32", "mixed_bfloat16")


@dataclass
class TrainConfig:
    epochs: int = 150                 # the report's cap; early stopping usually ends sooner
    batch_size: int = 64              # fits any CPU or GPU; SGD members use the report's 128
    optimizer: str = "adam"           # 'adam' (report), 'adamw', 'sgd' (momentum; Nesterov below)
    lr: float = 1e-3                  # Adam's default; SGD members set 0.01-0.1
    momentum: float = 0.9             # SGD only
    nesterov: bool = False            # SGD only; Nesterov beat plain momentum in the literature
    weight_decay: float = 0.0         # decoupled decay for adamw / sgd; the report put L2 in layers
    schedule: str = "plateau"         # 'plateau' (report: ReduceLROnPlateau) or 'cosine'
    plateau_factor: float = 0.5       # LR multiplier when PublicTest accuracy stalls
    plateau_patience: int = 5         # epochs without improvement before the LR drops
    warmup_epochs: int = 0            # linear warm-up for 'cosine'
    early_stopping: int = 10          # the report's patience; 0 turns it off
    label_smoothing: float = 0.0      # 0.1 in the modern recipe
    augment: bool = False             # flip, shift, rotation, zoom, erasing (the modern recipe)
    oversample: float = 0.0           # the report's option: replicate 60% of every class but Happy
    classes: int = 7                  # 7 (standard) or 6 (report: Disgust merged into Angry)
    target: str = "fer2013"           # 'fer2013', 'ferplus-majority' or 'ferplus-votes'
    tta: TTA = TTA.FLIP               # test-time views of the sidecar's metrics (older files: true)
    seed: int = 0
    limit: int | None = None          # keep only the first N rows per split (quick runs)
    # Warm restart: start from this member's shipped weights (same folder, same architecture) with a
    # fresh optimizer and a new cosine cycle. The members end a 40-epoch cosine under-fitted (~70%
    # training accuracy), and a new cycle from the committed float16 weights needs nothing that is not
    # in the repository, so training can go on from any checkout.
    init_from: str | None = None
    # Knowledge distillation (fer_core/distill.py): the targets become (1 - distill) * labels +
    # distill * the teacher ensemble's probabilities on the same Training image, under its served
    # views. ``teacher`` is a models folder, or "shipped" for the repository's ensemble (models/).
    teacher: str | None = None
    distill: float = 0.0
    # Arithmetic of the training step: 'auto' is mixed_bfloat16 where the hardware computes bfloat16
    # natively (a GPU, or a CPU with avx512_bf16 / amx_bf16: vgg_s trains 1.3-1.4x faster on 2 such
    # cores, docs/benchmarks.md) and float32 elsewhere, where bfloat16 is emulated and slower. The
    # weights stay float32 either way, and the sidecar records what ran (``trained.precision``).
    precision: str = "auto"

    def __post_init__(self):
        choices = {"optimizer": ("adam", "adamw", "sgd"), "schedule": ("plateau", "cosine"),
                   "target": ("fer2013", "ferplus-majority", "ferplus-votes"), "classes": (6, 7),
                   "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs!r}, {self.batch_size!r}")
        if not 0.0 <= self.distill <= 1.0 or (self.distill > 0) != (self.teacher is not None):
            raise ValueError(f"distill must be in [0, 1] and > 0 exactly when a teacher is named, got "
                             f"distill={self.distill!r}, teacher={self.teacher!r}")
        self.tta = resolve_tta(self.tta)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config as any version stored it: unknown keys are dropped and missing ones take their
        defaults (a field is only ever added with the default that means what runs did before it)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def same_as(self, stored: dict | None, ignore=()) -> bool:
        """Whether ``stored`` (a checkpoint's or a sidecar's config) is this config, but for the fields
        in ``ignore``. Compared as configs, not as dicts: an older spelling (``"tta": true``) or a field
        added since is no difference, so a finished member is not retrained nor a run restarted."""
        return stored is not None and not self.differences(stored, ignore)

    def differences(self, stored: dict, ignore=()) -> list[str]:
        """The fields where ``stored`` differs from this config, as ``"name: stored -> this"``."""
        try:
            a = TrainConfig.from_dict(stored).to_dict()
        except (TypeError, ValueError) as e:  # a config this version cannot read: another recipe
            return [f"unreadable stored config ({e})"]
        b = self.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in b if k not in ignore and a[k] != b[k]]


# What one face may cost the live path, every member and view included (fer_core.cost): twice the
# 1.85 GFLOP/face of the resnet_s + vgg_s + vgg_s2 ensemble at zoom-flip. On CPUs with AVX-512 VNNI the
# int8 runtime serves a face 4x cheaper than float32 (docs/benchmarks.md), which pays for a larger
# ensemble; train_all.py chooses members only among ensembles within it.
ENSEMBLE_MAX_GFLOP = 3.7

# The face detectors by name (fer_core.faces.make_detector), here so that the web process's settings
# check them without importing OpenCV. blazeface finds heads rolled 30 degrees where Haar finds none
# (docs/benchmarks.md); blazeface-full runs the full-range model for the near search too (3x the near
# search's cost), for comparison and for webcams where the short-range model would lose faces.
DETECTORS = ("blazeface", "blazeface-full", "haar")

# Weights a stored member may hold, counted from its member.json before it is built
# (fer_core.store.check_sidecar): the report's largest member holds 21.3 M; a member of 50 M takes
# 200 MB as float32, so a typo in a sidecar (a layer 2,000,000 wide) is refused, not allocated.
MAX_MEMBER_PARAMS = 50_000_000
DEFAULT_DETECTOR = "blazeface"

# The frame pipeline's defaults (fer_core/pipeline.py), here so that the web process reads them
# without importing OpenCV.
MAX_FACES = 8  # faces answered per frame, the largest: a webcam or a photo shows one or a few people
# From this many frames in one batch (each a client waiting) the server serves a class, not a demo:
# a face then gets one view at most, a new face its first only (0.8 pp below zoom-flip on
# PrivateTest for that one frame, docs/benchmarks.md).
ONE_VIEW_FROM = 12
# Parts of a batch whose decoding overlaps the ensemble's run on the part before (docs/benchmarks.md).
PREP_CHUNKS = 4

# The report's recipe: Adam, ReduceLROnPlateau, early stopping 10, no augmentation.
REPORT = {}
# The report's SGD trial: lr 0.1, momentum 0.9, batch 128 (its L2 1e-4 sits in the layers).
REPORT_SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=128)
# Our recipe: augmentation, label smoothing, SGD-Nesterov with cosine decay, a longer patience
# because augmented training plateaus late; flip views at evaluation (the default).
MODERN = dict(augment=True, label_smoothing=0.1, optimizer="sgd", nesterov=True, lr=0.05, momentum=0.9,
              weight_decay=5e-4, schedule="cosine", warmup_epochs=2, epochs=60, early_stopping=0,
              batch_size=64)


@dataclass(frozen=True)
class MemberSpec:
    arch: str
    kwargs: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    note: str = ""

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{**self.train, **{k: v for k, v in overrides.items() if v is not None}})


_REPORT_VGG = dict(filters=(64, 128, 256, 512))
_VGG_S = dict(variant="v2", filters=(32, 64, 128, 256), dense=(256,), head="avg", conv_dropout=0.1, dense_dropout=0.4)
MEMBERS: dict[str, MemberSpec] = {
    # The report's nine members (its table: VGG0-4, Inc0, ResNet2-4; 4.8M to 21.3M parameters).
    "vgg0": MemberSpec("vgg", dict(variant="v0", dense=(25, 25), **_REPORT_VGG), REPORT, "VGG_v0, Adam"),
    "vgg1": MemberSpec("vgg", dict(variant="v1", l2_first=0.01, **_REPORT_VGG), REPORT, "VGG_v1, Adam"),
    "vgg2": MemberSpec("vgg", dict(variant="v2", **_REPORT_VGG), REPORT, "VGG_v2, Adam"),
    "vgg3": MemberSpec("vgg", dict(variant="v1", l2_first=0.01, **_REPORT_VGG), REPORT_SGD, "VGG_v1, SGD"),
    "vgg4": MemberSpec("vgg", dict(variant="v2", **_REPORT_VGG), REPORT_SGD, "VGG_v2, SGD"),
    "inc0": MemberSpec("inception", dict(blocks=(3, 3, 3)), REPORT, "Inception, 9 I-blocks, n=64 +32 per block"),
    "resnet2": MemberSpec("resnet", dict(depths=(3, 4, 6, 3), filters=(32, 64, 128, 256)), REPORT,
                          "ResNet 3-4-6-3, 32-256 filters"),
    "resnet3": MemberSpec("resnet", dict(depths=(2, 5, 5, 2), filters=(64, 128, 256, 512)), REPORT,
                          "ResNet 2-5-5-2, 64-512 filters"),
    "resnet4": MemberSpec("resnet", dict(depths=(3, 4, 6, 3), filters=(64, 128, 256, 512)), REPORT,
                          "ResNet34-like 3-4-6-3"),
    # Small members trained with the modern recipe: what the app runs on a CPU for every frame.
    # The shipped first cycles ran 40 epochs on 2 CPU cores (MODERN's 60 is the recipe's length);
    # saying so here lets a plain `python train_all.py` skip them as done and reproduce them from scratch.
    "vgg_s": MemberSpec("vgg", _VGG_S, dict(MODERN, epochs=40), "1.2M VGG, modern recipe"),
    # The same VGG from another seed: on 2 CPU cores the cheapest accurate member to add (vgg_s took 83
    # min for 40 epochs there; the recipe's default 60 take half as long again); seeds alone give an
    # ensemble some of its diversity.
    "vgg_s2": MemberSpec("vgg", _VGG_S, dict(MODERN, epochs=40, seed=1), "1.2M VGG, modern recipe, seed 1"),
    "resnet_s": MemberSpec("resnet", dict(depths=(1, 2, 2, 1), filters=(32, 64, 128, 256), dropout=0.3,
                                          l2=0.0), dict(MODERN, epochs=40), "small ResNet, modern recipe"),
    "inc_s": MemberSpec("inception", dict(blocks=(1, 1, 1), n0=32, step=32, stem=32, l2=0.0, head="avg",
                                          dropout=0.3), MODERN, "small Inception, modern recipe"),
}
REPORT_MEMBERS = ("vgg0", "vgg1", "vgg2", "vgg3", "vgg4", "inc0", "resnet2", "resnet3", "resnet4")
# Second cosine cycles (SGDR-style warm restarts) of the small members: 8 epochs (what 2 shared CPU
# cores finish in a few hours beside other work) from a lower peak
# (0.02, not 0.05) so that the restart keeps most of what the first cycle learned; a new seed so the
# augmentation and dropout streams do not replay the parent's.
_CYCLE2 = dict(MODERN, epochs=8, lr=0.02, warmup_epochs=1)


def _continued(parent: str, recipe: dict, seed: int, note: str) -> MemberSpec:
    """A warm restart of registered member ``parent``: its architecture, ``recipe`` started from its
    shipped weights (``init_from``), and a seed of its own."""
    p = MEMBERS[parent]
    return MemberSpec(p.arch, p.kwargs, dict(recipe, seed=seed, init_from=parent), f"{parent} continued: {note}")


MEMBERS.update({f"{parent}_c2": _continued(parent, _CYCLE2, seed, "a second 8-epoch cosine cycle")
                for parent, seed in (("vgg_s", 10), ("vgg_s2", 11), ("resnet_s", 12))})
# Distilled cycles: the same warm restart, with targets that mix the labels and the shipped ensemble's
# zoom-flip probabilities (0.3 / 0.7; Hinton et al. weight the soft term most). The 8-epoch plain cycle
# gained nothing on the served views (docs/training.md); the teacher is 0.9-1.4 pp above each member
# on PublicTest, and a student that learns its probabilities can close some of that gap at no
# inference cost. No label smoothing: the teacher's probabilities are soft already.
_DISTILL = dict(_CYCLE2, epochs=10, teacher="shipped", distill=0.7, label_smoothing=0.0)
MEMBERS.update({f"{parent}_kd": _continued(parent, _DISTILL, seed, "10 epochs distilled from the shipped ensemble")
                for parent, seed in (("vgg_s", 20), ("vgg_s2", 21), ("resnet_s", 22))})
# Crop training (lever c): vgg_s seeing the centre 40 px of its (shifted) 48 px face, so random 40 px
# crops in training and the centre crop of each view at test time. An epoch and a served face cost
# (40/48)^2 = 0.69 of vgg_s's, so a fourth member of this kind fits the ensemble's cost cap where a
# fourth 48 px member does not (docs/training.md); a seed of its own for diversity. 20 epochs: one
# cosine cycle that 2 shared CPU cores finish in a few hours.
MEMBERS["vgg_s_crop"] = MemberSpec("vgg", dict(_VGG_S, crop=4), dict(MODERN, epochs=20, seed=3),
                                   "1.2M VGG on random 40 px crops, modern recipe, seed 3")
# Long cycles (SGDR / snapshot ensembles, Huang et al. 2017): a shipped member continued from its
# weights with a fresh cosine cycle as long as the recipe's, 60 epochs from the recipe's peak 0.05, so
# that the cycle leaves the first cycle's minimum and anneals into a better one. The short 8-10-epoch
# cycles did not pay (docs/training.md): too short to anneal. Each cycle's end is a member of its own
# (a snapshot), and the next cycle starts from it: ``<parent>_l2`` from the shipped member, ``_l3``
# from ``_l2``. A seed of its own per cycle so the augmentation stream does not replay the parent's.
_LONG = dict(MODERN, epochs=60)
MEMBERS.update({f"{parent}_l2": _continued(parent, _LONG, seed, "a second cosine cycle of 60 epochs")
                for parent, seed in (("vgg_s2", 31), ("vgg_s", 30), ("resnet_s", 32))})
MEMBERS.update({f"{parent}_l3": _continued(f"{parent}_l2", _LONG, seed, "a third cosine cycle of 60 epochs")
                for parent, seed in (("vgg_s2", 41), ("vgg_s", 40), ("resnet_s", 42))})
LONG_MEMBERS = ("vgg_s2_l2", "vgg_s_l2", "resnet_s_l2", "vgg_s2_l3", "vgg_s_l3", "resnet_s_l3")
# In training order: a warm restart needs its parent; inc_s (scored, not chosen so far) comes last.
SMALL_MEMBERS = ("vgg_s", "vgg_s2", "resnet_s", "vgg_s_c2", "vgg_s2_c2", "resnet_s_c2",
                 "vgg_s_kd", "vgg_s2_kd", "resnet_s_kd", "vgg_s_crop", "inc_s")
# train_all.py's named groups of experiments; its default, "shipped", is read from the shipped
# models/ensemble.json (``with_parents``), so that it follows the ensemble as it changes.
GROUPS: dict[str, tuple[str, ...]] = {
    "small": SMALL_MEMBERS,
    "continued": ("vgg_s_c2", "vgg_s2_c2", "resnet_s_c2"),
    "distilled": ("vgg_s_kd", "vgg_s2_kd", "resnet_s_kd"),
    "long": LONG_MEMBERS,
    "report": REPORT_MEMBERS,
    "all": tuple(MEMBERS),
}


def with_parents(names) -> list[str]:
    """``names`` with the members they continue from (``init_from``, which is read from the same
    models folder) before them, each once: what must be trained to reproduce ``names``."""
    out: list[str] = []

    def add(name: str) -> None:
        parent = member_spec(name).train.get("init_from")
        if parent:
            add(parent)
        if name not in out:
            out.append(name)

    for n in names:
        add(n)
    return out
# What --quick trains: each family at a tiny width, on a data subset, in a few CPU minutes. Adam without
# warm-up and a fast batch-norm momentum, because a short run has only tens of steps.
QUICK = dict(MODERN, optimizer="adam", lr=3e-3, warmup_epochs=0, weight_decay=0.0, epochs=3)
QUICK_MEMBERS: dict[str, MemberSpec] = {
    "vgg_q": MemberSpec("vgg", dict(variant="v2", filters=(8, 16, 16, 32), dense=(32,), head="avg",
                                    conv_dropout=0.1, dense_dropout=0.2, bn_momentum=0.9), QUICK),
    # Widths of 16 and 32: a strided convolution whose input channels are not a multiple of 16 trips
    # oneDNN's AVX-512 backward kernels on AMD Zen 4 (docs/training.md); no member needs one.
    "resnet_q": MemberSpec("resnet", dict(depths=(1, 1), filters=(16, 32), l2=0.0, bn_momentum=0.9), QUICK),
    "inc_q": MemberSpec("inception", dict(blocks=(1, 1), n0=16, step=16, stem=8, l2=0.0, head="avg",
                                        bn_momentum=0.9), QUICK),
}


def member_spec(name: str) -> MemberSpec:
    spec = MEMBERS.get(name) or QUICK_MEMBERS.get(name)
    if spec is None:
        raise ValueError(f"unknown member {name!r}; known: {sorted(MEMBERS) + sorted(QUICK_MEMBERS)}")
    return spec

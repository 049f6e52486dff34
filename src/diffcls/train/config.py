"""Training options: the fields every method shares, their checks, and the classifiers' config.

A method's config is a dataclass whose fields are its ``diffcls train`` flags (``--batch-size`` is
``batch_size``). :data:`COMMON_OPTIONS` are read by every method; each method names the others it reads
(:attr:`diffcls.methods.Method.options`), so a flag that the chosen method would ignore is refused with one line
instead of being dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from diffcls.didicm import SAMPLERS
from diffcls.errors import DiffclsError

DEFAULT_LR = {"sgd": 0.1, "adamw": 2e-3, "lamb": 2e-3}
SCHEDULERS = {"cosine": "cosine", "step": "step", "const": "constant"}  # --sched name -> timm's name

COMMON_OPTIONS = frozenset(
    {
        "data",
        "method",
        "model",
        "output",
        "epochs",
        "batch_size",
        "lr",
        "opt",
        "weight_decay",
        "sched",
        "warmup_epochs",
        "min_lr",
        "clip_grad",
        "ema_decay",
        "amp",
        "data_ratio",
        "img_size",
        "fit",
        "augment",
        "seed",
        "workers",
        "device",
        "val_every",
    }
)


# What every method that trains on a labelled split reads (standard, didicm, ddpm): how the training split is cut.
SUPERVISED_OPTIONS = frozenset({"equal_steps", "low_res", "val_split", "train_limit", "ratio_lr"})
# ... and what the classifiers (standard, didicm) read besides: targets, timm's RandAugment, repeated augmentation,
# colour jitter, and the named recipes that set them (diffcls.train.recipes).
CLASSIFIER_OPTIONS = SUPERVISED_OPTIONS | {
    "smoothing",
    "mixup",
    "cutmix",
    "rand_augment",
    "aug_repeats",
    "color_jitter",
    "recipe",
}


def flag(option: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + option.replace("_", "-")


def check(checks: list[tuple[bool, str]]) -> None:
    """Raise :class:`DiffclsError` with the message of the first failed ``(ok, message)``."""
    for ok, message in checks:
        if not ok:
            raise DiffclsError(message)


def common_checks(c) -> list[tuple[bool, str]]:
    """The checks of :data:`COMMON_OPTIONS` on any method's config ``c``."""
    return [
        (c.epochs >= 0, f"--epochs must be >= 0, got {c.epochs}"),
        (c.batch_size >= 1, f"--batch-size must be >= 1, got {c.batch_size}"),
        (c.lr is None or c.lr > 0, f"--lr must be > 0, got {c.lr}"),
        (c.img_size is None or c.img_size >= 8, f"--img-size must be >= 8, got {c.img_size}"),
        (c.ema_decay is None or 0 < c.ema_decay < 1, "--ema-decay must lie in (0, 1)"),
        (c.opt in DEFAULT_LR, f"unknown optimiser {c.opt!r}; choose from {', '.join(DEFAULT_LR)}"),
        (c.sched in SCHEDULERS, f"unknown scheduler {c.sched!r}; choose cosine, step or const"),
        (c.device in ("auto", "cpu") or c.device.startswith("cuda"), f"unknown device {c.device!r}"),
        (c.val_every >= 1, f"--val-every must be >= 1, got {c.val_every}"),
    ]


def config_from_options(cls: type, options: dict, accepted: frozenset[str], method: str):
    """``cls(**options)`` after refusing any option outside ``accepted`` (named as its flag)."""
    names = {f.name for f in fields(cls)}
    ignored = sorted(k for k in options if k not in accepted or k not in names)
    if ignored:
        listed = ", ".join(flag(k) for k in ignored)
        raise DiffclsError(f"{listed} {'does' if len(ignored) == 1 else 'do'} not apply to --method {method}")
    return cls(**options)


@dataclass
class TrainConfig:
    """All options of the classifier methods (standard, didicm) and of ddpm; stored under ``"train"`` in the
    checkpoint's ``config.json``. Each method reads the common options and its own (see the method modules)."""

    data: str
    method: str
    model: str
    output: str
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    opt: str = "adamw"
    weight_decay: float = 0.05
    sched: str = "cosine"
    warmup_epochs: int = 1
    min_lr: float = 1e-6
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    clip_grad: float | None = None
    ema_decay: float | None = None
    amp: bool = False
    data_ratio: float = 1.0
    equal_steps: bool = False
    ratio_lr: bool = False  # the DiDiCM reference's rule for a data fraction r: lr × √(1/r)
    val_split: float = 0.1  # fraction of the training images held out for per-epoch validation (0: the test split)
    train_limit: int | None = None  # train on a fixed stratified subset of N training images (before val_split)
    img_size: int | None = None
    fit: str = "auto"
    low_res: int | None = None
    augment: str | None = None
    rand_augment: str | None = None  # timm's RandAugment config string, e.g. rand-m7-mstd0.5-inc1
    aug_repeats: int = 1  # timm's RepeatAugSampler: each image this many times per epoch, augmented apart
    color_jitter: float = 0.0  # brightness, contrast and saturation jitter of this strength
    recipe: str | None = None  # the named recipe that filled the options (diffcls.train.recipes)
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    val_every: int = 1  # validate and checkpoint every N epochs and after the last
    noise: str = "loglinear"
    sampling_eps: float = 1e-5
    val_sampler: str = "cp"
    val_steps: int = 8
    label_dropout: float = 0.0
    val_images: int = 200  # ddpm: validation classifies only N validation images (a Diffusion Classifier is slow)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of a stored ``"train"`` block (keys of other config classes are left out). A block written
        before validation splits existed validated on the test split: its ``val_split`` is 0."""
        names = {f.name for f in fields(cls)}
        return cls(**{"val_split": 0.0, **{k: v for k, v in d.items() if k in names}})

    def validate(self) -> None:
        check(
            common_checks(self)
            + [
                (0.0 <= self.smoothing < 1.0, f"--smoothing must lie in [0, 1), got {self.smoothing}"),
                (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must be >= 0"),
                (self.low_res is None or self.low_res >= 1, f"--low-res must be >= 1, got {self.low_res}"),
                (self.aug_repeats >= 1, f"--aug-repeats must be >= 1, got {self.aug_repeats}"),
                (self.color_jitter >= 0, f"--color-jitter must be >= 0, got {self.color_jitter}"),
                (0.0 <= self.val_split < 1.0, f"--val-split must lie in [0, 1), got {self.val_split}"),
                (
                    self.train_limit is None or self.train_limit >= 2,
                    f"--train-limit must be >= 2, got {self.train_limit}",
                ),
                (0.0 <= self.label_dropout < 1.0, f"--label-dropout must lie in [0, 1), got {self.label_dropout}"),
                (self.val_steps >= 1, f"--val-steps must be >= 1, got {self.val_steps}"),
                (
                    self.val_sampler in SAMPLERS,
                    f"unknown --val-sampler {self.val_sampler!r}; choose from {', '.join(SAMPLERS)}",
                ),
            ]
        )

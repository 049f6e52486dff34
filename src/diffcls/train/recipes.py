"""Named training recipes: the DiDiCM paper's ImageNet recipes as presets of ``diffcls train`` flags.

``diffcls train --recipe didicm-weak`` fills every flag of the recipe; a flag given on the command line wins.
The values are the reference's (README and ``train.py`` of the authors' code, see ``specs/didicm.md``): 8 GPUs
with ``--batch-size`` per GPU, so one process with the same flags runs the recipe at an eighth of its global
batch (the reference does not rescale its learning rate with the batch; neither does a recipe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcls.errors import DiffclsError


@dataclass(frozen=True)
class Recipe:
    """A named set of training options (config field names, as in :class:`~diffcls.train.config.TrainConfig`)."""

    name: str
    summary: str  # one line for --help
    options: dict = field(default_factory=dict)


# Shared by both: LAMB, weight decay 0.01, 5 warm-up epochs, cosine, 600 epochs, AMP, no EMA, no clipping.
_COMMON = {
    "opt": "lamb",
    "weight_decay": 0.01,
    "warmup_epochs": 5,
    "sched": "cosine",
    "epochs": 600,
    "amp": True,
    "augment": "rrc-flip",
}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "didicm-weak",
            "the paper's Weak Aug: LAMB lr 2e-3, batch 128/GPU, RandomResizedCrop + flip + ColorJitter 0.4, "
            "hard labels",
            {**_COMMON, "lr": 2e-3, "batch_size": 128, "color_jitter": 0.4},
        ),
        Recipe(
            "didicm-strong",
            "the paper's Strong Aug (≈ ResNet strikes back A1): LAMB lr 3.5e-3, batch 256/GPU, mixup 0.2, "
            "cutmix 1.0, smoothing 0.1, RandAugment rand-m7-mstd0.5-inc1, 3 repeated augmentations",
            {
                **_COMMON,
                "lr": 3.5e-3,
                "batch_size": 256,
                "mixup": 0.2,
                "cutmix": 1.0,
                "smoothing": 0.1,
                "rand_augment": "rand-m7-mstd0.5-inc1",
                "aug_repeats": 3,
            },
        ),
    )
}


def apply_recipe(name: str | None, options: dict) -> dict:
    """``options`` filled with the recipe's values where not given (None: unchanged). The recipe's name is kept
    in ``options["recipe"]`` so a checkpoint records it."""
    if name is None:
        return options
    if name not in RECIPES:
        raise DiffclsError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return {**RECIPES[name].options, **options, "recipe": name}


def recipes_help() -> str:
    """The recipes and what they set, for ``--recipe``'s help."""
    return "a named training recipe; flags given explicitly win: " + "; ".join(
        f"{r.name} ({r.summary})" for r in RECIPES.values()
    )

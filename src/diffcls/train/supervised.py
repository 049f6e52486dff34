"""Training on labelled images of a data spec: the data side shared by the classifiers and the ddpm method."""

from __future__ import annotations

import math

import numpy as np
from timm.data import Mixup
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import Sampler

from diffcls.data import (
    DataSource,
    ImageDataset,
    ImageTransform,
    TransformConfig,
    data_ratio_indices,
    default_augment,
    load_source,
    subset_split,
    training_splits,
)
from diffcls.train.config import TrainConfig
from diffcls.train.loop import Trainer


def fill_data_defaults(c: TrainConfig, source: DataSource) -> None:
    """Fill in the options whose default depends on the data set (input size, augmentation), as a training
    records them in its ``config.json``."""
    c.img_size = c.img_size or source.default_img_size
    c.augment = c.augment or default_augment(c.data)


class SupervisedTrainer(Trainer):
    """A :class:`Trainer` over a :class:`TrainConfig`: the training split (``data_ratio`` of each class, tiled to
    the full length with ``equal_steps``), the data kind's augmentation, mixup/cutmix, and the test split for
    validation. Subclasses provide the model, objective, validation and export."""

    RESUME_KEYS = (
        "data",
        "method",
        "model",
        "epochs",
        "batch_size",
        "seed",
        "data_ratio",
        "equal_steps",
        "val_split",
        "train_limit",
        "opt",
        "img_size",
    )
    config: TrainConfig

    def _build_data(self) -> None:
        c = self.config
        self.source = source = self.source or load_source(c.data)
        fill_data_defaults(c, source)
        self.transform = TransformConfig(img_size=c.img_size, fit=c.fit, low_res=c.low_res)
        # Validation (per-epoch curves, plateau checks, fitted temperatures) never sees a test image unless asked
        # for with --val-split 0; the held-out images are the same for every data fraction.
        train_split, val_split = training_splits(source.train, c.train_limit, c.val_split)
        if c.data_ratio < 1.0:
            keep = data_ratio_indices(train_split.labels, c.data_ratio)
            if c.equal_steps:
                # Tile the subset to the full split's length: every data fraction gets the same number of
                # optimisation steps (the same budget), and only the variety of images shrinks.
                keep = np.resize(keep, len(train_split))
            train_split = subset_split(train_split, keep)
        train_transform = ImageTransform(self.transform, c.augment, c.rand_augment, c.color_jitter)
        self.train_set = ImageDataset(train_split, train_transform)
        self.val_set = ImageDataset(val_split or source.test, ImageTransform(self.transform))

    def default_lr(self) -> float:
        """The loop's default (or --lr), times √(1/data_ratio) with --ratio-lr (the DiDiCM reference's rule for
        training on a data fraction)."""
        c = self.config
        return super().default_lr() * (math.sqrt(1.0 / c.data_ratio) if c.ratio_lr else 1.0)

    def train_sampler(self, epoch: int) -> Sampler:
        """With ``--aug-repeats N``, timm's RepeatAugSampler: each image N times in a row (augmented apart), an
        epoch as long as the data set (so it holds 1/N of the images); otherwise the loop's sampler."""
        c = self.config
        if c.aug_repeats == 1:
            return super().train_sampler(epoch)
        sampler = RepeatAugSampler(
            self.train_set,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            num_repeats=c.aug_repeats,
            selected_round=0,  # timm's default rounds the epoch down to a multiple of 256 images
        )
        sampler.set_epoch(c.seed * 100_003 + epoch)  # it seeds its permutation by the epoch alone
        return sampler

    @property
    def _drop_last(self) -> bool:
        # timm's Mixup mixes a batch with its flip and needs an even batch size.
        return self.config.mixup > 0 or self.config.cutmix > 0

    def _build_mixup(self) -> Mixup | None:
        c = self.config
        return (
            Mixup(
                mixup_alpha=c.mixup,
                cutmix_alpha=c.cutmix,
                label_smoothing=c.smoothing,
                num_classes=self.source.num_classes,
            )
            if self._drop_last
            else None
        )

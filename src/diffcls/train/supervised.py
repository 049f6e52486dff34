"""Training on labelled images of a data spec: the data side shared by the classifiers and the ddpm method."""

from __future__ import annotations

import numpy as np
from timm.data import Mixup

from diffcls.data import (
    ImageDataset,
    ImageTransform,
    TransformConfig,
    data_ratio_indices,
    default_augment,
    load_source,
    subset_split,
)
from diffcls.train.config import TrainConfig
from diffcls.train.loop import Trainer


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
        "opt",
        "img_size",
    )
    config: TrainConfig

    def _build_data(self) -> None:
        c = self.config
        self.source = source = self.source or load_source(c.data)
        c.img_size = c.img_size or source.default_img_size
        c.augment = c.augment or default_augment(c.data)
        self.transform = TransformConfig(img_size=c.img_size, fit=c.fit, low_res=c.low_res)
        train_split = source.train
        if c.data_ratio < 1.0:
            keep = data_ratio_indices(train_split.labels, c.data_ratio)
            if c.equal_steps:
                # Tile the subset to the full split's length: every data fraction gets the same number of
                # optimisation steps (the same budget), and only the variety of images shrinks.
                keep = np.resize(keep, len(train_split))
            train_split = subset_split(train_split, keep)
        self.train_set = ImageDataset(train_split, ImageTransform(self.transform, c.augment))
        self.val_set = ImageDataset(source.test, ImageTransform(self.transform))

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

"""The representation-conditioned DiT's training phases as methods, each from a data spec to a checkpoint folder.

* ``repcond-pretrain``: ViT encoder and DiT trained jointly on the training images, labels unused, with the
  eps-prediction loss and conditioning dropout.
* ``uncond-pretrain``: the plain DiT of the same size, same recipe (the leakage baseline: a rep-cond training loss
  far below this one means z0 leaks through r).
* ``repcond-tune``: from a pretraining folder (``pretrained``), r replaced by a label embedding
  (:func:`~diffcls.repcond.model.tuning_model`), fine-tuned on labelled images (``data_ratio`` keeps a fraction of
  each class, as ``diffcls train --data-ratio``); validation accuracy is Diffusion Classifier Zero at ``val_t``.

Every folder holds ``config.json`` (with ``repcond.model``, ``repcond.codec``, ``transform``), ``model.safetensors``
(EMA weights when EMA is on), ``metrics.csv`` and ``training_state.pt`` (weights-only loadable). As in
:mod:`diffcls.train.loop`, every epoch reseeds from (seed, epoch), so ``resume=True`` after an interruption ends
with the same weights as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffcls.data import (
    ImageDataset,
    ImageTransform,
    TransformConfig,
    data_ratio_indices,
    load_source,
    make_loader,
    stratified_order,
    subset_split,
)
from diffcls.data.datasets import holdout_split
from diffcls.errors import DiffclsError
from diffcls.generative import add_noise
from diffcls.methods.base import METHODS, Method, register
from diffcls.models.noise_predictors import create_scheduler
from diffcls.repcond.codec import create_codec
from diffcls.repcond.conditions import ENCODER_FOR_DIT, EncoderCondition, encoder_config
from diffcls.repcond.dc_zero import dc_zero_errors, dc_zero_predict, timestep_noise
from diffcls.repcond.dit import DiT, dit_config
from diffcls.repcond.model import (
    DenoisingObjective,
    RepCondModel,
    load_checkpoint,
    model_spec,
    rescale_codes,
    save_model,
    tuning_model,
)
from diffcls.repcond.probe import representations
from diffcls.runtime.device import seed_everything
from diffcls.train.config import check, common_checks
from diffcls.train.loop import Trainer

__all__ = ["RepCondTrainConfig", "RepCondTrainer", "train_repcond", "pretrain", "tune", "REPCOND_METRICS_COLUMNS"]

LABEL_INITS = ("class-mean", "class-mean-rescaled", "random")  # how tuning starts its label codes
REPCOND_METRICS_COLUMNS = ["epoch", "train_loss", "lr", "val_top1", "seconds", "val_loss", "val_loss_null"]


@dataclass
class RepCondTrainConfig:
    """Options of one training phase; stored under ``"train"`` in the folder's ``config.json``."""

    data: str
    method: str
    output: str
    model: str = "dit_small"  # DiT preset; tune: taken from the pretrained folder
    encoder: str | None = None  # ViT preset; None: the one paired with the DiT preset
    pretrained: str | None = None  # tune: the pretraining folder
    vae: str | None = None  # a local AutoencoderKL folder; None: pixel space (tune: the pretrained folder's codec)
    d_r: int = 64
    patch_size: int | None = None  # override the DiT preset's patch size
    encoder_patch_size: int | None = None
    decode_injection: str = "output"
    r_tokens: int | None = None  # pretrain: a spatial r of this many values per DiT token (d_r follows)
    cond_dropout: float = 0.1
    label_init: str = "class-mean"  # tune: "class-mean" (mean r per class), "class-mean-rescaled" or "random"
    reset_injection: bool = False  # tune: zero the pretrained injection projections (tune the trunk alone)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-4
    opt: str = "adamw"
    weight_decay: float = 0.0
    sched: str = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 1e-6
    clip_grad: float | None = 1.0
    ema_decay: float | None = None
    amp: bool = False  # bf16 autocast (CUDA only)
    data_ratio: float = 1.0
    img_size: int | None = None
    fit: str = "auto"
    augment: str = "none"
    val_holdout: int = 0  # training images held out of every phase as the validation split (0: the test split)
    val_images: int = 200
    val_t: int = 500  # tune: DC Zero validation timestep
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    val_every: int = 1  # validate and checkpoint every N epochs and after the last

    def validate(self) -> None:
        phase(self.method)
        check(
            common_checks(self)
            + [
                (not phase(self.method).tunes or bool(self.pretrained), f"{self.method} needs a pretrained folder"),
                (0.0 <= self.cond_dropout < 1.0, f"--cond-dropout must lie in [0, 1), got {self.cond_dropout}"),
                (self.decode_injection in ("output", "input"), "decode_injection is output or input"),
                (self.label_init in LABEL_INITS, f"--label-init is one of {', '.join(LABEL_INITS)}"),
                (0 <= self.val_t < 1000, f"--val-t must lie in 0..999, got {self.val_t}"),
                (self.val_holdout >= 0 and self.val_images >= 1, "--val-holdout must be >= 0 and val_images >= 1"),
            ]
        )


class RepCondTrainer(Trainer):
    """One training phase, built from a :class:`RepCondTrainConfig`: this module's data and model on the loop,
    checkpoints, resume and torchrun handling of :class:`diffcls.train.loop.Trainer`."""

    RESUME_KEYS = (
        "data",
        "method",
        "model",
        "pretrained",
        "epochs",
        "batch_size",
        "seed",
        "data_ratio",
        "lr",
        "d_r",
        "val_holdout",
        "label_init",
        "reset_injection",
        "r_tokens",
        "decode_injection",
    )
    METRICS_COLUMNS = REPCOND_METRICS_COLUMNS

    # ------------------------------------------------------------------------------------------------ building

    def _build_data(self) -> None:
        # The datasets follow in _build_model: tuning reads them off the pretrained folder's transform.
        self.source = self.source or load_source(self.config.data)

    def _build_model(self) -> None:
        c = self.config
        self.alphas_cumprod = create_scheduler().alphas_cumprod
        seed_everything(c.seed)
        if phase(c.method).tunes:
            self._build_tuning()
        else:
            self._build_pretraining()
        self.objective = DenoisingObjective(self.alphas_cumprod, c.cond_dropout)
        self._build_optimisation(c.lr)

    def _datasets(self, transform: TransformConfig, labelled: bool) -> None:
        c = self.config
        train, val = self.source.train, self.source.test
        if c.val_holdout:
            train, val = holdout_split(train, c.val_holdout)
        val = subset_split(val, np.sort(stratified_order(val.labels)[: c.val_images]))
        if labelled and c.data_ratio < 1.0:
            train = subset_split(train, data_ratio_indices(train.labels, c.data_ratio))
        self.transform = transform
        self.train_set = ImageDataset(train, ImageTransform(transform, c.augment))
        self.val_set = ImageDataset(val, ImageTransform(transform))

    def _build_pretraining(self) -> None:
        c = self.config
        c.img_size = c.img_size or self.source.default_img_size
        self._datasets(TransformConfig(img_size=c.img_size, fit=c.fit), labelled=False)
        self.codec = create_codec(vae=c.vae, channels=self.source.channels).to(self.device)
        channels, size, _ = self.codec.latent_shape(c.img_size)
        repcond = phase(c.method).with_encoder
        encoder = None
        d_r = c.d_r
        if repcond:
            name = c.encoder or ENCODER_FOR_DIT.get(c.model, "vit_small")
            patch = c.encoder_patch_size
            if c.r_tokens is not None:  # a spatial r lives on the DiT's token grid
                dit_patch = c.patch_size or dit_config(c.model, size, channels).patch_size
                if patch not in (None, dit_patch):
                    raise DiffclsError(
                        f"a spatial r (--r-tokens) needs the encoder's patch size {dit_patch}, not {patch}"
                    )
                patch = dit_patch
            encoder = EncoderCondition(
                encoder_config(name, size, channels, c.d_r, patch_size=patch, r_tokens=c.r_tokens)
            )
            d_r = encoder.d_r
        dit = DiT(
            dit_config(
                c.model,
                size,
                channels,
                d_r=d_r if repcond else None,
                patch_size=c.patch_size,
                decode_injection=c.decode_injection,
                r_tokens=c.r_tokens if repcond else None,
            )
        )
        self.model = RepCondModel(dit, encoder).to(self.device)
        self.pretrained_folder = None

    def _build_tuning(self) -> None:
        c = self.config
        pre = load_checkpoint(c.pretrained, self.device)
        if c.img_size not in (None, pre.transform.img_size):
            raise DiffclsError(f"{c.pretrained} was trained at image size {pre.transform.img_size}, not {c.img_size}")
        c.model, c.img_size = pre.config["model"], pre.transform.img_size
        self._datasets(pre.transform, labelled=True)
        self.codec = pre.codec
        means = None
        if c.label_init != "random" and isinstance(pre.model.condition, EncoderCondition):
            means = self._class_means(pre.model.condition)
            means = rescale_codes(means) if c.label_init == "class-mean-rescaled" else means
        self.model = tuning_model(
            pre.model, self.source.num_classes, means, d_r=c.d_r, reset_injection=c.reset_injection, seed=c.seed
        ).to(self.device)
        self.pretrained_folder = str(c.pretrained)

    @torch.no_grad()
    def _class_means(self, encoder: EncoderCondition) -> torch.Tensor:
        """float[K, d_r]: the mean r of each class over the labelled training images (no augmentation)."""
        k = self.source.num_classes
        sums, counts = torch.zeros(k, encoder.d_r, device=self.device), torch.zeros(k, device=self.device)
        plain = ImageDataset(self.train_set.split, ImageTransform(self.transform))
        for images, labels in make_loader(plain, 256, shuffle=False):
            r = representations(encoder, self.codec.encode(images.to(self.device)))
            sums.index_add_(0, labels.to(self.device), r)
            counts.index_add_(0, labels.to(self.device), torch.ones(len(labels), device=self.device))
        return sums / counts.clamp_min(1)[:, None]

    # -------------------------------------------------------------------------------------------- checkpoints

    def model_config(self) -> dict:
        """The loop's ``config.json`` plus a ``repcond`` block: architecture, codec, pretrained folder."""
        return {
            **super().model_config(),
            "repcond": {
                "model": model_spec(self.model),
                "codec": self.codec.to_config(),
                "num_train_timesteps": len(self.alphas_cumprod),
                "pretrained": self.pretrained_folder,
            },
        }

    def save_model(self, model: RepCondModel, epoch: int) -> None:
        save_model(model, self.out, {"epoch": str(epoch)})

    # -------------------------------------------------------------------------------------------------- loops

    def loss_on_batch(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.objective(self.train_model, self.codec.encode(images), target)["loss"]

    @torch.no_grad()
    def validate(self) -> dict:
        """Held-out denoising loss at fixed seeded (t, noise) with and without the condition; DC Zero accuracy at
        ``val_t`` for a tuned model."""
        c = self.config
        model = self.eval_model.eval()
        images, labels = zip(*(self.val_set[i] for i in range(len(self.val_set))))
        z0 = self.codec.encode(torch.stack(images).to(self.device))
        labels = torch.as_tensor(labels, device=self.device)
        gen = torch.Generator().manual_seed(c.seed)
        t = torch.randint(len(self.alphas_cumprod), (len(z0),), generator=gen).to(self.device)
        noise = torch.randn(z0.shape, generator=gen).to(self.device)
        z_t = add_noise(z0, self.alphas_cumprod, t, noise)
        cond = {"encoder": z0, "label": labels, "none": None}[model.kind]
        row = {"val_loss": _mse(model(z_t, t, cond), noise)}
        if model.kind != "none":
            row["val_loss_null"] = _mse(model(z_t, t, cond, torch.ones_like(labels, dtype=torch.bool)), noise)
        if model.kind == "label":
            bank = timestep_noise([c.val_t], tuple(z0.shape[1:]), c.seed).to(self.device)
            errors = dc_zero_errors(model, z0, self.source.num_classes, self.alphas_cumprod, [c.val_t], bank)
            row["val_top1"] = (dc_zero_predict(errors) == labels).float().mean().item()
        return row


def _mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return round(torch.nn.functional.mse_loss(prediction.float(), target).item(), 6)


class RepCondPhase(Method):
    """One phase of the rep-conditioned DiT (the three share a config and a trainer); scored by DC Zero."""

    config_class = RepCondTrainConfig
    trainer_class = RepCondTrainer
    evaluation = "dc-zero"
    default_model = "dit_small"
    models_help = "dit_tiny, dit_small, dit_s2, dit_b2"
    with_encoder: bool = False  # pretraining conditions the DiT on the encoder's r
    tunes: bool = False  # starts from a pretrained folder, with class labels in r's place
    _shared = frozenset({"cond_dropout", "val_holdout", "val_images", "d_r"})


@register
class RepCondPretrain(RepCondPhase):
    name = "repcond-pretrain"
    summary = "a DiT trained on unlabeled images with a ViT encoder's representation r"
    options = RepCondPhase._shared | {
        "encoder",
        "vae",
        "patch_size",
        "encoder_patch_size",
        "decode_injection",
        "r_tokens",
    }
    with_encoder = True


@register
class UncondPretrain(RepCondPhase):
    name = "uncond-pretrain"
    summary = "the same DiT without r (the leakage baseline)"
    options = RepCondPhase._shared | {"vae", "patch_size", "decode_injection"}


@register
class RepCondTune(RepCondPhase):
    name = "repcond-tune"
    summary = (
        "a pretrained DiT fine-tuned with class labels in r's place (its --model is the pretrained "
        "folder's; classified by Diffusion Classifier Zero)"
    )
    options = RepCondPhase._shared | {"pretrained", "label_init", "reset_injection", "val_t"}
    tunes = True


def phase(name: str) -> RepCondPhase:
    """The registered phase called ``name``; any other name is an error listing the phases."""
    method = METHODS.get(name)
    if not isinstance(method, RepCondPhase):
        phases = [m.name for m in METHODS.values() if isinstance(m, RepCondPhase)]
        raise DiffclsError(f"unknown method {name!r} for the rep-conditioned DiT; choose from {', '.join(phases)}")
    return method


def train_repcond(config: RepCondTrainConfig, resume: bool = False, progress: bool | None = None) -> dict:
    """Run one phase (``config.method``); returns the last metrics row."""
    return phase(config.method).train(config, resume, progress)


def pretrain(config: RepCondTrainConfig, resume: bool = False, progress: bool | None = None) -> dict:
    """``repcond-pretrain`` or ``uncond-pretrain``."""
    if phase(config.method).tunes:
        raise DiffclsError(f"pretrain runs a pretraining phase, not {config.method!r}")
    return train_repcond(config, resume, progress)


def tune(config: RepCondTrainConfig, resume: bool = False, progress: bool | None = None) -> dict:
    """``repcond-tune`` from ``config.pretrained``."""
    if not phase(config.method).tunes:
        raise DiffclsError(f"tune runs a tuning phase, not {config.method!r}")
    return train_repcond(config, resume, progress)

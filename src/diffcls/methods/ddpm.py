"""``ddpm``: a class-conditional noise predictor (diffusers ``UNet2DModel``, DDPM with T = 1000) for the Diffusion
Classifier, trained with DDPM's simple loss and saved as a diffusers ``DDPMPipeline`` folder. Its checkpoints are
scored by the Diffusion Classifier runner (:mod:`diffcls.eval.diffusion_classifier`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffcls.data import stratified_order
from diffcls.generative import add_noise, classify, parse_schedule
from diffcls.methods.base import Method, register
from diffcls.models.noise_predictors import (
    MULTIHEAD_SUFFIX,
    create_noise_predictor,
    create_scheduler,
    save_pipeline,
)
from diffcls.runtime.device import seed_everything
from diffcls.train.config import SUPERVISED_OPTIONS, check
from diffcls.train.supervised import SupervisedTrainer


class DDPMObjective:
    """DDPM's simple loss ||eps - eps_theta(x_t, t, y)||^2, t ~ U{0..T-1}; labels dropped to the null class
    (index K) with probability ``label_dropout``."""

    def __init__(self, num_classes: int, alphas_cumprod: torch.Tensor, label_dropout: float = 0.0):
        self.num_classes = num_classes
        self.alphas_cumprod = alphas_cumprod.float()
        self.label_dropout = label_dropout

    def __call__(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != 1:
            raise ValueError("ddpm trains on hard labels (no mixup, cutmix or label smoothing)")
        t = torch.randint(len(self.alphas_cumprod), (len(images),), device=images.device)
        noise = torch.randn_like(images)
        x_t = add_noise(images, self.alphas_cumprod, t, noise)
        drop = torch.rand(len(images), device=images.device) < self.label_dropout
        labels = torch.where(drop, self.num_classes, target)
        return F.mse_loss(model(x_t, t, labels).float(), noise)


class DDPMTrainer(SupervisedTrainer):
    """Trains a class-conditional UNet; validates with a flat Diffusion Classifier on a few test images."""

    def validate_config(self) -> None:
        super().validate_config()
        c = self.config
        check(
            [
                (
                    not (c.smoothing or c.mixup or c.cutmix),
                    "--method ddpm trains on hard labels: drop --smoothing, --mixup and --cutmix",
                ),
                (
                    not (c.model.endswith(MULTIHEAD_SUFFIX) and c.label_dropout),
                    "--label-dropout needs a null class; a multi-head UNet has one head per class and none",
                ),
            ]
        )

    def _build_model(self) -> None:
        c, k = self.config, self.source.num_classes
        seed_everything(c.seed)
        self.noise_scheduler = create_scheduler()
        self.model = create_noise_predictor(c.model, k, c.img_size).to(self.device)
        self.objective = DDPMObjective(k, self.noise_scheduler.alphas_cumprod, label_dropout=c.label_dropout)
        self._build_optimisation(self.default_lr())

    def save_model(self, model: nn.Module, epoch: int) -> None:
        save_pipeline(model, self.noise_scheduler, self.out)

    @torch.no_grad()
    def validate(self) -> dict:
        """Top-1 of a flat Diffusion Classifier (``val_steps`` timesteps, one seeded noise bank) on ``val_images``
        validation images (a fixed stratified subset: splits may be sorted by class)."""
        c, model = self.config, self.eval_model
        model.eval()
        chosen = np.sort(stratified_order(self.val_set.split.labels)[: c.val_images])
        count = len(chosen)
        images, labels = zip(*(self.val_set[int(i)] for i in chosen))
        x0, labels = torch.stack(images).to(self.device), torch.as_tensor(labels)
        noise = torch.randn(c.val_steps, *x0.shape[1:], generator=torch.Generator().manual_seed(c.seed))
        correct = 0
        for _, start in self.dist.shard_batches(range(0, count, 32)):  # ranks split the images
            result = classify(
                model,
                x0[start : start + 32],
                self.source.num_classes,
                self.noise_scheduler.alphas_cumprod,
                parse_schedule(str(c.val_steps)),
                noise.to(self.device),
                batch_size=max(c.batch_size, 256),
            )
            correct += (result.prediction.cpu() == labels[start : start + 32]).sum().item()
        return {"val_top1": self.dist.all_reduce_sum([correct])[0] / max(count, 1)}


@register
class DDPMMethod(Method):
    name = "ddpm"
    summary = (
        "a class-conditional noise predictor for the Diffusion Classifier, saved as a diffusers DDPMPipeline folder"
    )
    models_help = (
        "unet_tiny, unet_small or unet_base; with _multihead (e.g. unet_small_multihead) an unconditional UNet with "
        "one ε head per class, so the Diffusion Classifier scores all classes in one pass"
    )
    options = SUPERVISED_OPTIONS | {"label_dropout", "val_images", "val_steps"}
    trainer_class = DDPMTrainer
    evaluation = "diffusion-classifier"

"""Training objectives: one small class per method, each mapping (model, images, targets) to a scalar loss.

``ddpm`` trains a class-conditional noise predictor (the Diffusion Classifier's model) with DDPM's simple loss.

Targets are ``int64[B]`` hard labels, or ``float[B, K]`` soft targets when mixup/cutmix or label smoothing
produce them. DiDiCM picks the closed-form denoising score entropy for hard targets and the exact-ratio score
entropy for soft ones (inside :func:`diffcls.didicm.didicm_loss`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffcls.didicm import didicm_loss, get_noise


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """``int64[B] -> float[B, K]``: (1 − s)·onehot + s/K."""
    return F.one_hot(labels, num_classes).float() * (1.0 - smoothing) + smoothing / num_classes


class StandardObjective:
    """Cross-entropy on logits, with hard targets, label smoothing or soft (mixup) targets."""

    def __init__(self, num_classes: int, smoothing: float = 0.0):
        self.num_classes = num_classes
        self.smoothing = smoothing

    def __call__(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = model(images)
        if target.ndim == 2:
            return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.float(), target, label_smoothing=self.smoothing)


class DiDiCMObjective:
    """σ'(t)-weighted score entropy of the noisy-label diffusion, one t ~ U(eps, 1) per image."""

    def __init__(self, num_classes: int, smoothing: float = 0.0, noise: str = "loglinear",
                 sampling_eps: float = 1e-5):
        self.num_classes = num_classes
        self.smoothing = smoothing
        self.noise = get_noise(noise)
        self.sampling_eps = sampling_eps

    def __call__(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1 and self.smoothing > 0:
            target = smooth_targets(target, self.num_classes, self.smoothing)

        def score_fn(c_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return model(images, c_t, sigma).float()

        return didicm_loss(score_fn, target, self.num_classes, self.noise, sampling_eps=self.sampling_eps)


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


def add_noise(x0: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """DDPM's forward process: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` for x0, noise ``[B, ...]``, t ``int64[B]``."""
    a = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1))).float()
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def create_objective(method: str, num_classes: int, smoothing: float = 0.0, **kwargs):
    if method == "standard":
        return StandardObjective(num_classes, smoothing)
    if method == "didicm":
        return DiDiCMObjective(num_classes, smoothing, **kwargs)
    if method == "ddpm":
        return DDPMObjective(num_classes, **kwargs)
    raise ValueError(f"no objective for method {method!r}")

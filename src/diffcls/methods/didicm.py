"""``didicm``: discrete diffusion over the class label, conditioned on the image (arXiv 2511.20263), on a DiDiRN
backbone (image, noisy label and σ in, K log concrete scores out), trained with σ'(t)-weighted score entropy and
read out by one of the DiDiCM samplers (:data:`diffcls.didicm.SAMPLERS`: CP, CL, one-pass)."""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffcls.didicm import SamplerConfig, didicm_loss, get_noise
from diffcls.errors import DiffclsError
from diffcls.inference.predict import Readout, sample_proba
from diffcls.methods.base import register
from diffcls.methods.classifier import ClassifierMethod
from diffcls.models.factory import create_timm_model, is_didirn
from diffcls.train.config import CLASSIFIER_OPTIONS, TrainConfig


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """``int64[B] -> float[B, K]``: (1 − s)·onehot + s/K."""
    return F.one_hot(labels, num_classes).float() * (1.0 - smoothing) + smoothing / num_classes


class DiDiCMObjective:
    """σ'(t)-weighted score entropy of the noisy-label diffusion, one t ~ U(eps, 1) per image. Hard targets use
    the closed-form denoising score entropy, soft ones (smoothing, mixup) the exact-ratio score entropy."""

    def __init__(self, num_classes: int, smoothing: float = 0.0, noise: str = "loglinear", sampling_eps: float = 1e-5):
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


@register
class DiDiCMMethod(ClassifierMethod):
    name = "didicm"
    summary = "discrete label diffusion on a DiDiRN backbone"
    models_help = "a DiDiRN: didirn_small, didirn18 .. didirn152, or a late-conditioned *_late1/_late2"
    options = CLASSIFIER_OPTIONS | {"noise", "sampling_eps", "val_sampler", "val_steps"}
    uses_sampler = True

    def create_network(self, model_name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
        if not is_didirn(model_name):
            raise DiffclsError(
                f"--method didicm needs a DiDiRN backbone (didirn_small, didirn18..didirn152), got {model_name!r}"
            )
        return create_timm_model(model_name, num_classes, in_chans, conditional=True, **kwargs)

    def objective(self, config: TrainConfig, num_classes: int) -> DiDiCMObjective:
        return DiDiCMObjective(num_classes, config.smoothing, noise=config.noise, sampling_eps=config.sampling_eps)

    def readout(self, model: nn.Module, sampler: SamplerConfig | None = None, native_scores: bool = False) -> Readout:
        model.eval()
        sampler = sampler or SamplerConfig()
        return lambda images, generator=None: sample_proba(model, images, sampler, generator, native_scores)

    def native_ood_scores(self, sampler: SamplerConfig | None = None) -> tuple[str, ...]:
        return (sampler or SamplerConfig()).spec.native_scores

    def validation_sampler(self, config: TrainConfig) -> SamplerConfig:
        return SamplerConfig(config.val_sampler, steps=config.val_steps)

    def nfe(self, sampler: SamplerConfig | None = None) -> int:
        return (sampler or SamplerConfig()).nfe()

    def readout_fields(self, sampler: SamplerConfig | None = None) -> dict:
        return asdict(sampler or SamplerConfig())

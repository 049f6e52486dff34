"""``standard``: a cross-entropy classifier. Any timm model; a ``didirn*`` name builds DiDiRN's *standard twin*
(the same network, every layer kept, without the label/noise conditioning), so a twin-vs-DiDiCM comparison
isolates the diffusion. Read out by the softmax of its logits (one network evaluation per image)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffcls.didicm import SamplerConfig
from diffcls.inference.predict import Readout
from diffcls.methods.base import register
from diffcls.methods.classifier import ClassifierMethod
from diffcls.models.factory import create_timm_model, is_didirn
from diffcls.train.config import CLASSIFIER_OPTIONS, TrainConfig


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


@register
class StandardMethod(ClassifierMethod):
    name = "standard"
    summary = "cross-entropy classifier (any timm model; a didirn* name builds its twin)"
    models_help = "any timm model, e.g. didirn_small (the twin), resnet_small, resnet18"
    options = CLASSIFIER_OPTIONS

    def create_network(self, model_name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
        if is_didirn(model_name):
            kwargs["conditional"] = False
        return create_timm_model(model_name, num_classes, in_chans, pretrained=False, **kwargs)

    def objective(self, config: TrainConfig, num_classes: int) -> StandardObjective:
        return StandardObjective(num_classes, config.smoothing)

    def readout(self, model: nn.Module, sampler: SamplerConfig | None = None, native_scores: bool = False) -> Readout:
        model.eval()

        def read(images: torch.Tensor, generator: torch.Generator | None = None):
            logits = model(images).float()
            if not native_scores:
                return logits.softmax(dim=-1)
            # The energy score (Liu et al. 2020): -logsumexp of the logits, which the softmax discards.
            return logits.softmax(dim=-1), {"energy": -torch.logsumexp(logits.double(), dim=-1)}

        return read

    def native_ood_scores(self, sampler: SamplerConfig | None = None) -> tuple[str, ...]:
        return ("energy",)

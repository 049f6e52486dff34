"""Noise predictors from diffusers pipeline folders on local disk (nothing is downloaded).

* ``DDPMPipeline`` with a class-conditional ``UNet2DModel`` (``num_class_embeds`` set): pixel space.
* ``DiTPipeline``: a ``DiTTransformer2DModel`` in the latent space of its ``AutoencoderKL``. The image is encoded
  to the posterior **mean** times the VAE's scaling factor (as the reference code); the learned-variance half
  of DiT's output is dropped by the scorer. Labels are fed directly: no null class, no guidance.

Every loader returns a :class:`NoiseModel`, the one thing the Diffusion Classifier's evaluation needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel

from diffcls.data import TransformConfig
from diffcls.errors import DiffclsError
from diffcls.models.noise_predictors import load_pipeline_unet

from .scoring import EpsFn

__all__ = ["NoiseModel", "load_pretrained", "PIPELINES"]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class NoiseModel:
    """A class-conditional noise predictor ready to score: ``eps_fn`` on ``x0 = encode(images in [-1, 1])``."""

    eps_fn: EpsFn
    alphas_cumprod: torch.Tensor
    transform: TransformConfig  # how images reach the model: size, fit, normalisation to [-1, 1]
    folder: Path
    kind: str  # "checkpoint" (trained by diffcls) or the diffusers pipeline class
    num_class_embeds: int  # labels 0..num_class_embeds-1 are valid inputs
    class_names: list[str] | None = None
    encode: Callable[[torch.Tensor], torch.Tensor] = field(default=_identity)


class DiTNoisePredictor(nn.Module):
    """``(x_t, t, class_labels) -> DiT output`` (2C channels with learned variance; the scorer keeps the first C)."""

    def __init__(self, transformer: DiTTransformer2DModel):
        super().__init__()
        self.transformer = transformer

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.transformer(x_t, timestep=t, class_labels=class_labels).sample


class LatentEncoder:
    """Images float[B, 3, S, S] in [-1, 1] -> latents: the VAE posterior mean times its scaling factor."""

    def __init__(self, vae: AutoencoderKL):
        self.vae = vae

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images).latent_dist.mean * self.vae.config.scaling_factor


def _scheduler_alphas(folder: Path) -> torch.Tensor:
    """``alphas_cumprod`` of any scheduler folder: the betas fields are shared by DDPM/DDIM/DPM-Solver/Euler."""
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise DiffclsError(f"{folder} has no readable scheduler/scheduler_config.json") from None
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    return DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None}).alphas_cumprod


def _load_ddpm(folder: Path, device: str) -> NoiseModel:
    model, scheduler = load_pipeline_unet(folder, device)
    transform = TransformConfig(img_size=int(model.unet.config.sample_size))
    return NoiseModel(model, scheduler.alphas_cumprod, transform, folder, "DDPMPipeline",
                      int(model.unet.config.num_class_embeds))


def _load_dit(folder: Path, device: str) -> NoiseModel:
    for part in ("transformer", "vae"):
        if not (folder / part).is_dir():
            raise DiffclsError(f"{folder} is not a DiTPipeline folder (no {part}/)")
    transformer = DiTTransformer2DModel.from_pretrained(folder / "transformer", low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False)
    transformer.to(device).eval()
    vae.to(device).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    transform = TransformConfig(img_size=int(transformer.config.sample_size) * factor, fit="resize")
    num_classes = int(transformer.config.num_embeds_ada_norm)
    return NoiseModel(DiTNoisePredictor(transformer), _scheduler_alphas(folder), transform, folder, "DiTPipeline",
                      num_classes, encode=LatentEncoder(vae))


PIPELINES: dict[str, Callable[[Path, str], NoiseModel]] = {"DDPMPipeline": _load_ddpm, "DiTPipeline": _load_dit}


def load_pretrained(folder: str | Path, device: str = "cpu") -> NoiseModel:
    """A :class:`NoiseModel` from a diffusers pipeline folder (``model_index.json`` names the pipeline)."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        raise DiffclsError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    try:
        kind = json.loads(index.read_text())["_class_name"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DiffclsError(f"{index} is not a valid model_index.json") from None
    if kind not in PIPELINES:
        raise DiffclsError(f"{folder} holds a {kind}; supported: {', '.join(PIPELINES)}")
    return PIPELINES[kind](folder, device)

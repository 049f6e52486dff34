"""Noise predictors from diffusers pipeline folders on local disk (nothing is downloaded).

* ``DDPMPipeline`` with a class-conditional ``UNet2DModel`` (``num_class_embeds`` set): pixel space.
* ``DiTPipeline``: a ``DiTTransformer2DModel`` in the latent space of its ``AutoencoderKL``. The image is encoded
  to the posterior **mean** times the VAE's scaling factor (as the reference code); the learned-variance half
  of DiT's output is dropped by the scorer. Labels are fed directly: no null class, no guidance.
* ``StableDiffusionPipeline`` (zero-shot, text-conditional): the candidates are prompts, from the class names
  and a template ("a photo of a {}.") or from a CSV ``prompt,classname,classidx`` (several prompts per class
  allowed; each is a candidate, and a class's probability is the sum over its prompts). Prompts are encoded
  once (padded to the tokenizer's length, last hidden state); no guidance. A v-prediction model's output is
  converted to epsilon.

Every loader returns a :class:`NoiseModel`, the one thing the Diffusion Classifier's evaluation needs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel
from safetensors import SafetensorError

from diffcls.data import TransformConfig
from diffcls.errors import DiffclsError, first_line
from diffcls.models.noise_predictors import load_pipeline_unet

from .scoring import EpsFn

__all__ = [
    "NoiseModel",
    "load_pretrained",
    "pipeline_kind",
    "class_prompts",
    "read_prompt_csv",
    "PIPELINES",
    "TEXT_CONDITIONAL",
]


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
    candidate_classes: list[int] | None = None  # text models: the class of each prompt (candidate)
    prompts: list[str] | None = None

    def candidates(self, num_classes: int) -> list[int]:
        """The class of each candidate the model scores: the prompts' classes, or 0..K-1."""
        return self.candidate_classes if self.candidate_classes is not None else list(range(num_classes))


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


class TextConditionalNoisePredictor(nn.Module):
    """``(x_t, t, prompt index) -> eps``: a ``UNet2DConditionModel`` with one encoded prompt per candidate."""

    def __init__(
        self,
        unet: nn.Module,
        prompt_embeddings: torch.Tensor,
        alphas_cumprod: torch.Tensor,
        prediction_type: str = "epsilon",
    ):
        super().__init__()
        self.unet = unet
        self.register_buffer("prompt_embeddings", prompt_embeddings)  # [P, L, D]
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.prediction_type = prediction_type

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        out = self.unet(x_t, t, encoder_hidden_states=self.prompt_embeddings[class_labels]).sample
        if self.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) x0
            abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            out = abar.sqrt() * out + (1 - abar).sqrt() * x_t
        return out


def class_prompts(class_names: list[str], template: str = "a photo of a {}.") -> list[tuple[str, int]]:
    """One prompt per class: ``[(template.format(name), class index)]``."""
    if "{}" not in template:
        raise DiffclsError(f"the prompt template needs a {{}} for the class name, got {template!r}")
    return [(template.format(name), i) for i, name in enumerate(class_names)]


def read_prompt_csv(path: str | Path) -> list[tuple[str, int]]:
    """``[(prompt, classidx)]`` from a CSV with the columns ``prompt`` and ``classidx`` (``classname`` optional)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise DiffclsError(f"cannot read prompts {path}: {e.strerror or e}") from None
    if not rows or not {"prompt", "classidx"} <= set(rows[0]):
        raise DiffclsError(f"{path} needs the columns prompt and classidx (and optionally classname)")
    try:
        return [(r["prompt"], int(r["classidx"])) for r in rows]
    except (TypeError, ValueError):
        raise DiffclsError(f"{path}: classidx must be an integer in every row") from None


def _scheduler_config(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise DiffclsError(f"{folder} has no readable scheduler/scheduler_config.json") from None


def _scheduler_alphas(folder: Path) -> torch.Tensor:
    """``alphas_cumprod`` of any scheduler folder: the betas fields are shared by DDPM/DDIM/DPM-Solver/Euler."""
    config = _scheduler_config(folder)
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    return DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None}).alphas_cumprod


def _load_ddpm(folder: Path, device: str, prompts=None) -> NoiseModel:
    model, scheduler = load_pipeline_unet(folder, device)
    transform = TransformConfig(img_size=int(model.unet.config.sample_size))
    # labels 0..K of a class-conditional UNet (K: its null class), 0..K-1 of a multi-head one
    labels = int(model.unet.config.num_class_embeds or model.num_classes)
    return NoiseModel(model, scheduler.alphas_cumprod, transform, folder, "DDPMPipeline", labels)


def _load_dit(folder: Path, device: str, prompts=None) -> NoiseModel:
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
    return NoiseModel(
        DiTNoisePredictor(transformer),
        _scheduler_alphas(folder),
        transform,
        folder,
        "DiTPipeline",
        num_classes,
        encode=LatentEncoder(vae),
    )


@torch.no_grad()
def _load_stable_diffusion(folder: Path, device: str, prompts: list[tuple[str, int]] | None) -> NoiseModel:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if not prompts:
        raise DiffclsError(
            "a text-conditional model needs prompts: the data's class names with --prompt-template, or --prompts CSV"
        )
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        if not (folder / part).is_dir():
            raise DiffclsError(f"{folder} is not a StableDiffusionPipeline folder (no {part}/)")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).eval()
    tokens = tokenizer(
        [p for p, _ in prompts],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    embeddings = text_encoder(tokens)[0]
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False).to(device).eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False).to(device).eval()
    alphas = _scheduler_alphas(folder)
    prediction_type = _scheduler_config(folder).get("prediction_type", "epsilon")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise DiffclsError(f"{folder}: prediction type {prediction_type!r} is not supported (epsilon, v_prediction)")
    eps_fn = TextConditionalNoisePredictor(unet, embeddings, alphas, prediction_type).to(device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    transform = TransformConfig(img_size=int(unet.config.sample_size) * factor, fit="resize")
    return NoiseModel(
        eps_fn,
        alphas,
        transform,
        folder,
        "StableDiffusionPipeline",
        len(prompts),
        encode=LatentEncoder(vae),
        candidate_classes=[c for _, c in prompts],
        prompts=[p for p, _ in prompts],
    )


PIPELINES: dict[str, Callable[..., NoiseModel]] = {
    "DDPMPipeline": _load_ddpm,
    "DiTPipeline": _load_dit,
    "StableDiffusionPipeline": _load_stable_diffusion,
}
TEXT_CONDITIONAL = ("StableDiffusionPipeline",)


def pipeline_kind(folder: str | Path) -> str:
    """The pipeline class named by a folder's ``model_index.json``."""
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
    return kind


def load_pretrained(
    folder: str | Path, device: str = "cpu", prompts: list[tuple[str, int]] | None = None
) -> NoiseModel:
    """A :class:`NoiseModel` from a diffusers pipeline folder (``model_index.json`` names the pipeline).

    ``prompts`` ``[(text, class index)]`` are the candidates of a text-conditional pipeline (ignored otherwise).
    """
    kind = pipeline_kind(folder)
    try:
        return PIPELINES[kind](Path(folder), device, prompts)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, SafetensorError) as e:
        # diffusers/transformers: a component config that is not JSON, weights that are truncated or do not fit
        # the config. Their messages may span lines; the CLI prints one.
        raise DiffclsError(f"cannot load the {kind} in {folder}: {first_line(e)}") from None

"""Class-conditional noise predictors (diffusers ``UNet2DModel``) for the Diffusion Classifier.

A :class:`ClassConditionalUNet` wraps a diffusers ``UNet2DModel`` with ``num_class_embeds = K + 1``: classes 0..K-1
and a null class K (label dropout during training, as classifier-free guidance does; the classifier never feeds
it). Its forward is the scoring signature ``(x_t, t, class_labels) -> eps_hat``, so a trained model is an
``EpsFn`` as it stands.

A :class:`MultiHeadUNet` (model names with the ``_multihead`` suffix, e.g. ``unet_small_multihead``) is the
Robust Diffusion Classifier's multi-head network: an unconditional UNet with K·C output channels, one ε head per
class, trained on the head of each image's label. One forward pass gives every class's prediction, so the
Diffusion Classifier costs one network evaluation per (image, timestep) instead of K (:func:`scores_all_classes`).

A trained model is saved as a diffusers ``DDPMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``)
that ``DDPMPipeline.from_pretrained`` loads, next to diffcls's own ``config.json`` and training files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors import SafetensorError

from diffcls.errors import DiffclsError, first_line
from diffcls.runtime.checkpoint import check_weights_file

PIPELINE_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # unet/ of a DDPMPipeline folder

# Widths per resolution level; the last level gets self-attention when ``attention`` is set.
UNET_PRESETS: dict[str, dict] = {
    "unet_tiny": {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4, "attention": False},
    "unet_small": {"block_out_channels": (16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8, "attention": False},
    "unet_base": {"block_out_channels": (32, 64, 128), "layers_per_block": 2, "norm_num_groups": 16, "attention": True},
}


MULTIHEAD_SUFFIX = "_multihead"  # one ε head per class: all classes in one pass


def create_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """DDPM's linear beta schedule (1e-4 to 0.02), epsilon prediction."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear", prediction_type="epsilon")


class ClassConditionalUNet(nn.Module):
    """``(x_t float[N, C, S, S], t int64[N], class_labels int64[N]) -> eps_hat float[N, C, S, S]``."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet
        self.num_classes = unet.config.num_class_embeds - 1  # the last embedding is the null class

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, class_labels=class_labels).sample


class MultiHeadUNet(nn.Module):
    """An unconditional UNet with one ε head per class (K·C output channels).

    ``all_class_heads(x_t float[N, C, S, S], t int64[N]) -> float[N, K, C, S, S]``, and the scoring signature
    ``(x_t, t, class_labels int64[N]) -> float[N, C, S, S]`` (each row's own head), which the training loss uses.
    """

    scores_all_classes = True  # the scorer calls all_class_heads once per (image, t)

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet
        self.channels = int(unet.config.in_channels)
        self.num_classes = int(unet.config.out_channels) // self.channels

    def all_class_heads(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.unet(x_t, t).sample
        return out.view(len(x_t), self.num_classes, self.channels, *out.shape[2:])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.all_class_heads(x_t, t)[torch.arange(len(x_t), device=x_t.device), class_labels]


def scores_all_classes(eps_fn) -> bool:
    """Whether a noise predictor gives every class's ε in one pass (:class:`MultiHeadUNet`)."""
    return bool(getattr(eps_fn, "scores_all_classes", False))


def noise_predictor_names() -> list[str]:
    return [*UNET_PRESETS, *(name + MULTIHEAD_SUFFIX for name in UNET_PRESETS)]


def create_noise_predictor(
    model_name: str, num_classes: int, img_size: int, in_chans: int = 3
) -> ClassConditionalUNet | MultiHeadUNet:
    """A class-conditional UNet by preset name (``unet_tiny``, ``unet_small``, ``unet_base``), or with the
    ``_multihead`` suffix a :class:`MultiHeadUNet` of the same widths."""
    multihead = model_name.endswith(MULTIHEAD_SUFFIX)
    preset_name = model_name.removesuffix(MULTIHEAD_SUFFIX)
    if preset_name not in UNET_PRESETS:
        choices = ", ".join(noise_predictor_names())
        raise DiffclsError(f"unknown noise predictor {model_name!r}; choose from {choices}")
    preset = UNET_PRESETS[preset_name]
    levels = len(preset["block_out_channels"])
    if img_size % 2 ** (levels - 1):
        raise DiffclsError(
            f"{model_name} halves the image {levels - 1} times: --img-size must be a multiple of "
            f"{2 ** (levels - 1)}, got {img_size}"
        )
    attn = preset["attention"]
    down = ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D" if attn else "DownBlock2D"]
    up = ["AttnUpBlock2D" if attn else "UpBlock2D"] + ["UpBlock2D"] * (levels - 1)
    unet = UNet2DModel(
        sample_size=img_size,
        in_channels=in_chans,
        out_channels=in_chans * num_classes if multihead else in_chans,
        block_out_channels=preset["block_out_channels"],
        layers_per_block=preset["layers_per_block"],
        norm_num_groups=preset["norm_num_groups"],
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        add_attention=attn,
        num_class_embeds=None if multihead else num_classes + 1,
    )
    return MultiHeadUNet(unet) if multihead else ClassConditionalUNet(unet)


def save_pipeline(model: ClassConditionalUNet | MultiHeadUNet, scheduler: DDPMScheduler, folder: str | Path) -> None:
    """Write ``folder`` as a diffusers ``DDPMPipeline`` (safetensors), each file replaced atomically."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pipeline-") as tmp:
        DDPMPipeline(unet=model.unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        for src in sorted(Path(tmp).rglob("*")):
            if src.is_file():
                dst = folder / src.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)


def load_pipeline_unet(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[ClassConditionalUNet | MultiHeadUNet, DDPMScheduler]:
    """The class-conditional UNet and scheduler of a ``DDPMPipeline`` folder, in eval mode; a multi-head one
    when diffcls trained it so (its ``config.json`` names a ``*_multihead`` model)."""
    folder = Path(folder)
    if not (folder / "unet").is_dir() or not (folder / "scheduler").is_dir():
        raise DiffclsError(f"{folder} is not a DDPMPipeline folder (needs unet/ and scheduler/)")
    weights = folder / "unet" / PIPELINE_WEIGHTS_NAME
    if not weights.is_file():
        raise DiffclsError(f"{folder}/unet holds no {PIPELINE_WEIGHTS_NAME} (pickled weights are never loaded)")
    check_weights_file(weights)  # a truncated file or a pickle: one clear line, before diffusers reads it
    unet = _from_pretrained(UNet2DModel, folder / "unet", use_safetensors=True, low_cpu_mem_usage=False)
    scheduler = _from_pretrained(DDPMScheduler, folder / "scheduler")
    if _trained_model_name(folder).endswith(MULTIHEAD_SUFFIX):
        if unet.config.num_class_embeds or unet.config.out_channels % unet.config.in_channels:
            raise DiffclsError(f"the UNet in {folder} is not a multi-head one (K·C outputs, no class embedding)")
        return MultiHeadUNet(unet).to(device).eval(), scheduler
    if not unet.config.num_class_embeds:
        raise DiffclsError(f"the UNet in {folder} is not class-conditional (num_class_embeds is not set)")
    return ClassConditionalUNet(unet).to(device).eval(), scheduler


def _trained_model_name(folder: Path) -> str:
    """The ``model`` of diffcls's ``config.json`` beside the pipeline ("" for a diffusers folder without one)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return ""
    return str(config.get("model", "")) if isinstance(config, dict) else ""


def _from_pretrained(cls, folder: Path, **kwargs):
    """``cls.from_pretrained(folder)`` with diffusers' errors (a config that is not JSON, weights that do not
    fit the config) as one-line DiffclsErrors naming the folder."""
    try:
        return cls.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, SafetensorError) as e:
        raise DiffclsError(f"cannot load the {cls.__name__} in {folder}: {first_line(e)}") from None

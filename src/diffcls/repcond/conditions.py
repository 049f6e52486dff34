"""What feeds the DiT's injection points: a :class:`Condition` maps its input to r float[B, d_r].

* :class:`EncoderCondition` (pretraining): a timm ``VisionTransformer`` over the **clean** latent z0
  float[B, C, S, S], either average-pooled over its tokens, then its head ``Linear(width, d_r)``: one narrow global
  vector per image; or, with ``r_tokens=c`` (the paper's decode layer, "Norm, Linear, UnPatchify", as a map), every
  token through the ViT's final norm and ``Linear(width, c)``: c values per token, on the DiT's token grid
  (d_r = N c, flattened token-major), which the DiT unpatchifies. Narrowness (d_r <= 256 globally; c below the
  p*p*C values of a patch) and conditioning dropout are the guards against z0 leaking through r (the denoiser
  could otherwise read eps off ``(z_t - sqrt(abar) z0) / sqrt(1 - abar)``).
* :class:`LabelCondition` (tuning, Diffusion Classifier Zero): ``nn.Embedding(K + 1, d_r)`` over class labels
  int64[B]; row K is the null class.
* No condition at all (``None``): the unconditional DiT baseline.

**Conditioning dropout.** ``condition(inputs, drop)`` replaces the rows where ``drop`` (bool[B]) is set by the
condition's learned null vector ``null`` float[d_r] (the encoder's a free parameter starting at zero, so a
dropped r starts as "no injection"; the label table's row K). The objective draws ``drop`` with probability p.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from diffcls.errors import DiffclsError

__all__ = ["EncoderConfig", "ENCODER_PRESETS", "encoder_config", "Condition", "EncoderCondition", "LabelCondition"]


@dataclass(frozen=True)
class EncoderConfig:
    """A ViT over latents float[B, in_channels, input_size, input_size], pooled to r float[B, d_r]."""

    input_size: int
    in_channels: int
    d_r: int = 64
    patch_size: int = 2
    embed_dim: int = 64
    depth: int = 2
    num_heads: int = 2
    global_pool: str = "avg"  # "avg" (mean of the patch tokens) or "token" (a CLS token); unused by a spatial r
    r_tokens: int | None = None  # spatial r: values per token (d_r = tokens x r_tokens); None: a global vector

    @property
    def num_tokens(self) -> int:
        return (self.input_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


# Encoder sizes, paired with the DiT presets (the spec's [I]: mirror the denoiser on the encoder side).
ENCODER_PRESETS: dict[str, dict] = {
    "vit_tiny": dict(patch_size=2, embed_dim=64, depth=2, num_heads=2),
    "vit_small": dict(patch_size=4, embed_dim=128, depth=4, num_heads=4),
    "vit_s2": dict(patch_size=2, embed_dim=384, depth=12, num_heads=6),
    "vit_b2": dict(patch_size=2, embed_dim=768, depth=12, num_heads=12),
}
ENCODER_FOR_DIT = {"dit_tiny": "vit_tiny", "dit_small": "vit_small", "dit_s2": "vit_s2", "dit_b2": "vit_b2"}


def encoder_config(name: str, input_size: int, in_channels: int, d_r: int = 64, **overrides) -> EncoderConfig:
    """The preset ``name`` (``vit_tiny``, ``vit_small``, ``vit_s2``, ``vit_b2``) with ``overrides`` (None dropped).
    With ``r_tokens`` set, ``d_r`` is ignored: r has ``r_tokens`` values per token (its patch size must be the
    DiT's, so the two token grids agree)."""
    if name not in ENCODER_PRESETS:
        raise DiffclsError(f"unknown encoder {name!r}; choose from {', '.join(ENCODER_PRESETS)}")
    fields = {**ENCODER_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    config = EncoderConfig(input_size=input_size, in_channels=in_channels, d_r=d_r, **fields)
    if input_size % config.patch_size:
        raise DiffclsError(
            f"{name}: the input size {input_size} must be a multiple of the patch size {config.patch_size}"
        )
    if config.r_tokens is not None:
        return EncoderConfig(**{**config.to_dict(), "d_r": config.num_tokens * config.r_tokens})
    if not 1 <= d_r <= 256:
        raise DiffclsError(f"d_r must lie in 1..256 (a narrow r guards against leakage), got {d_r}")
    return config


class Condition(nn.Module):
    """Base: ``forward(inputs, drop=None) -> r float[B, d_r]``, null rows where ``drop`` bool[B] is set."""

    d_r: int

    @property
    def null(self) -> torch.Tensor:
        raise NotImplementedError

    def represent(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        r = self.represent(inputs)
        if drop is None:
            return r
        return torch.where(drop.to(r.device)[:, None], self.null.to(r.dtype)[None], r)


class EncoderCondition(Condition):
    """r = ViT(z0): ``float[B, C, S, S] -> float[B, d_r]`` (timm ``VisionTransformer``; its head is the
    projection to d_r: of the pooled tokens, or of each token for a spatial r, flattened token-major)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = c = config
        self.d_r = c.d_r
        spatial = c.r_tokens is not None
        self.vit = VisionTransformer(
            img_size=c.input_size,
            patch_size=c.patch_size,
            in_chans=c.in_channels,
            num_classes=c.r_tokens if spatial else c.d_r,
            global_pool="" if spatial else c.global_pool,  # "": the head maps every token
            embed_dim=c.embed_dim,
            depth=c.depth,
            num_heads=c.num_heads,
            class_token=c.global_pool == "token" and not spatial,
        )
        self.null_vector = nn.Parameter(torch.zeros(c.d_r))

    @property
    def null(self) -> torch.Tensor:
        return self.null_vector

    def represent(self, z0: torch.Tensor) -> torch.Tensor:
        return self.vit(z0).flatten(1)  # spatial: [B, N, c] -> [B, N * c]


class LabelCondition(Condition):
    """r = table[label]: ``int64[B] -> float[B, d_r]``; labels 0..K-1 and the null class K."""

    def __init__(self, num_classes: int, d_r: int):
        super().__init__()
        self.num_classes, self.d_r = num_classes, d_r
        self.embedding = nn.Embedding(num_classes + 1, d_r)
        nn.init.normal_(self.embedding.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def null(self) -> torch.Tensor:
        return self.embedding.weight[self.num_classes]

    def represent(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(labels)

    def forward(self, labels: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        if drop is not None:
            labels = torch.where(drop.to(labels.device), self.num_classes, labels)
        return self.embedding(labels)

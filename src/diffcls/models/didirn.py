"""DiDiRN: the ResNet score network of DiDiCM, its standard twin, and a plain ResNet baseline.

DiDiRN (Diffusion-Driven ResNet, arXiv 2511.20263, code ``omerb01/didicm``) maps an image ``x``,
a noisy class label ``c_t`` and a noise level ``sigma`` to ``K`` log concrete scores
``s_j ~ log p_sigma(j | x) / p_sigma(c_t | x)``. The geometry follows the reference code:

* **Stem**: Conv3x3 stride 1 -> BN -> ReLU -> MaxPool3x3 stride 2 (``stem="default"``; spatial
  size H/2, not ResNet's H/4). ``stem="small"`` drops the max-pool for 32-px inputs.
* **Stages**: torchvision layout (BasicBlock / Bottleneck with expansion 4, stride on the 3x3
  conv, projection shortcut 1x1 conv + BN), stage strides 1, 2, 2, 2.
* **Conditioning**: one vector ``e = MLP(sinusoid(sigma)) + Embedding(c_t)`` of width
  ``cond_channels`` (128), shared by all blocks. The sinusoid is 256-dim,
  ``[cos(sigma f_k), sin(sigma f_k)]`` with ``f_k = 10000^(-k/128)``; the MLP is
  Linear(256->128) -> SiLU -> Linear(128->128).
* **Block** (as in the reference *code*, not its figure)::

      h = BN_last(conv branch(x))
      h = h + Linear(SiLU(e))[:, :, None, None]     # additive, per block
      h = SiLU(GroupNorm(h))                         # GroupNorm computed in fp32
      out = ReLU(h + shortcut(x))

* **Head**: global average pool -> flatten -> (dropout) -> Linear -> K outputs, no softmax.
* PyTorch default initialisation throughout.

Three variants are built by the same class:

* ``DiDiRN(conditional=True)``: the DiDiCM score network, ``forward(x, c_t, sigma)``.
* ``DiDiRN(conditional=False)``: the **standard twin**. Every layer is kept, including the
  GroupNorm + SiLU after each block; only the conditioning input is removed (no label
  embedding, no sigma-MLP, no per-block Linear). ``forward(x)`` returns class logits. Its
  parameter names are exactly DiDiRN's minus :data:`CONDITIONING_MODULES`, so twin vs DiDiRN
  isolates the effect of diffusion.
* ``DiDiRN(conditional=False, post_norm=False)``: a **plain ResNet** of the same widths and
  stem (BatchNorm only; blocks end in ``ReLU(h + shortcut(x))``).

**Late conditioning** (``cond_stages=n``, a diffcls variant, not in the paper): only the last ``n`` stages take
the conditioning; the stem and the earlier stages see the image alone. Their output, the *image prefix*
(:meth:`DiDiRN.forward_prefix`), is then the same at every diffusion step, so a sampler computes it once per
image and runs only :meth:`DiDiRN.forward_conditioned` per step (:func:`diffcls.inference.predict.bind_image` does
this for every late-conditioned DiDiRN). Registered as ``didirn_small_late1/late2`` and
``didirn18/50_late1/late2``; the speed and accuracy trade-off is measured in docs/performance.md.

GroupNorm groups (:func:`norm_groups_for`): the largest divisor of C that is at most
``min(32, C // 2)``. That is exactly the reference's ``GroupNorm(32, C)`` for every registered
ImageNet model (all widths are multiples of 32 and >= 64), and 8 / 16 groups at widths 16 / 32.
Groups of size 1 must be avoided: GroupNorm would then subtract each channel's spatial mean and
erase the additive per-channel conditioning completely.

timm entrypoints (registered on ``import diffcls.models``): ``didirn18/34/50/101/152`` (ImageNet
geometry, widths 64/128/256/512), ``didirn_small`` (CPU-sized 32-px backbone: widths
16/32/64/128, BasicBlock [2, 2, 2, 2], 3x3 stride-1 stem without max-pool) and ``resnet_small``
(the plain baseline with didirn_small's widths and stem).

Example:
    >>> import timm, torch, diffcls.models
    >>> net = timm.create_model("didirn_small", num_classes=10)
    >>> net(torch.randn(2, 3, 32, 32), torch.tensor([0, 3]), torch.tensor([0.5, 2.0])).shape
    torch.Size([2, 10])
    >>> twin = timm.create_model("didirn_small", num_classes=10, conditional=False)
    >>> twin(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from timm.models import register_model
from torch import Tensor, nn

__all__ = [
    "CONDITIONING_MODULES",
    "BasicBlock",
    "Bottleneck",
    "DiDiRN",
    "GroupNorm32",
    "SigmaEmbedder",
    "count_parameters",
]

#: Sub-module names that hold the conditioning parameters (absent from the twin).
CONDITIONING_MODULES: tuple[str, ...] = ("sigma_embed", "label_embed", "cond_proj")

BlockType = Literal["basic", "bottleneck"]
StemType = Literal["default", "small"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def norm_groups_for(channels: int, max_groups: int = 32, min_group_size: int = 2) -> int:
    """GroupNorm group count: the largest divisor of ``channels`` <= ``min(max_groups, channels // min_group_size)``.

    32 for every width >= 64 that is a multiple of 32 (the reference's ``GroupNorm(32, C)``);
    16 -> 8 and 32 -> 16 for narrow widths. Groups of one channel are avoided on purpose: the
    per-block conditioning is a per-channel constant over H x W, which a one-channel group
    would subtract out entirely.
    """
    limit = max(1, min(max_groups, channels // max(1, min_group_size)))
    return next(g for g in range(limit, 0, -1) if channels % g == 0)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 and cast back to the input dtype (safe under fp16/bf16 AMP)."""

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` of shape [B, C, H, W]; returns the same shape and dtype."""
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return nn.functional.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class SigmaEmbedder(nn.Module):
    """Sinusoidal features of the noise level followed by a 2-layer SiLU MLP.

    Args:
        out_channels: Output width (``cond_channels``).
        freq_dim: Sinusoid width (even); frequencies ``f_k = max_period^(-k / (freq_dim/2))``.
        max_period: Base of the geometric frequency ladder.
    """

    def __init__(self, out_channels: int = 128, freq_dim: int = 256, max_period: float = 10000.0) -> None:
        super().__init__()
        if freq_dim % 2:
            raise ValueError(f"freq_dim must be even, got {freq_dim}")
        self.freq_dim = freq_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels))

    def sinusoid(self, sigma: Tensor) -> Tensor:
        """[B] noise levels -> [B, freq_dim] features ``[cos(sigma f), sin(sigma f)]`` (fp32)."""
        half = self.freq_dim // 2
        k = torch.arange(half, dtype=torch.float32, device=sigma.device)
        freqs = torch.exp(-math.log(self.max_period) * k / half)  # f_k = max_period^(-k/half), always fp32
        args = sigma.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, sigma: Tensor) -> Tensor:
        """[B] noise levels -> [B, out_channels] embedding."""
        feats = self.sinusoid(sigma)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class _ResBlock(nn.Module):
    """Shared tail of both block types: optional conditioning add, post-norm, residual, ReLU."""

    expansion: int = 1

    def _init_tail(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        cond_channels: int | None,
        post_norm: bool,
        norm_groups: int,
        norm_min_group_size: int,
    ) -> None:
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.cond_proj = nn.Linear(cond_channels, out_channels) if cond_channels is not None else None
        self.out_norm: nn.Module = (
            nn.Sequential(
                GroupNorm32(norm_groups_for(out_channels, norm_groups, norm_min_group_size), out_channels), nn.SiLU()
            )
            if post_norm
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def _branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """x: [B, C_in, H, W], emb: [B, cond_channels] = SiLU(e) or None -> [B, C_out, H/s, W/s]."""
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self._branch(x)
        if self.cond_proj is not None:
            if emb is None:
                raise ValueError("conditional block called without a conditioning embedding")
            h = h + self.cond_proj(emb).to(h.dtype)[:, :, None, None]
        h = self.out_norm(h)
        return self.act(h + shortcut)


class BasicBlock(_ResBlock):
    """Two 3x3 convs (stride on the first) + DiDiRN tail. Output width ``channels``."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        cond_channels: int | None = 128,
        post_norm: bool = True,
        norm_groups: int = 32,
        norm_min_group_size: int = 2,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self._init_tail(in_channels, channels, stride, cond_channels, post_norm, norm_groups, norm_min_group_size)

    def _branch(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_ResBlock):
    """1x1 -> 3x3 (stride) -> 1x1 convs + DiDiRN tail. Output width ``4 * channels``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        cond_channels: int | None = 128,
        post_norm: bool = True,
        norm_groups: int = 32,
        norm_min_group_size: int = 2,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self._init_tail(in_channels, out_channels, stride, cond_channels, post_norm, norm_groups, norm_min_group_size)

    def _branch(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        return self.bn3(self.conv3(h))


_BLOCKS: dict[str, type[_ResBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class DiDiRN(nn.Module):
    """DiDiRN score network, its unconditional twin, or a plain ResNet (see module docstring).

    Args:
        num_classes: K, number of classes (output width and label-embedding rows).
        layers: Blocks per stage; stage ``i > 0`` downsamples by 2.
        widths: Base width per stage (block output is ``width * expansion``).
        block: ``"basic"`` (expansion 1) or ``"bottleneck"`` (expansion 4).
        in_chans: Input image channels.
        stem: ``"default"`` = 3x3 s1 conv + BN + ReLU + 3x3 s2 max-pool; ``"small"`` = no max-pool.
        stem_width: Stem conv width (default ``widths[0]``).
        conditional: True for DiDiRN (``forward(x, c_t, sigma)``), False for the twin (``forward(x)``).
        post_norm: Keep GroupNorm + SiLU after each block. False gives a plain ResNet and
            requires ``conditional=False``.
        cond_channels: Width of the shared conditioning vector e.
        freq_dim: Width of the sinusoidal sigma features.
        norm_groups: Maximum GroupNorm groups (32 as in the reference).
        norm_min_group_size: Minimum channels per GroupNorm group; see :func:`norm_groups_for`.
        drop_rate: Dropout before the classifier (timm convention; 0 in DiDiCM).
        cond_stages: How many of the last stages take the conditioning (None: all, the paper's DiDiRN). The
            stem and the stages before them form the image prefix, computed once per image by the samplers.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        layers: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        block: BlockType = "basic",
        in_chans: int = 3,
        stem: StemType = "default",
        stem_width: int | None = None,
        conditional: bool = True,
        post_norm: bool = True,
        cond_channels: int = 128,
        freq_dim: int = 256,
        norm_groups: int = 32,
        norm_min_group_size: int = 2,
        drop_rate: float = 0.0,
        cond_stages: int | None = None,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
        if stem not in ("default", "small"):
            raise ValueError(f"stem must be 'default' or 'small', got {stem!r}")
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty and equal length")
        if conditional and not post_norm:
            raise ValueError("post_norm=False (plain ResNet) is unconditional only; pass conditional=False")
        if cond_stages is not None and not 1 <= cond_stages <= len(layers):
            raise ValueError(f"cond_stages must be in 1..{len(layers)} (or None for all), got {cond_stages}")
        block_cls = _BLOCKS[block]
        stem_width = stem_width or widths[0]
        self.num_classes = num_classes
        self.conditional = conditional
        # Channels-last activations: oneDNN's convolutions and GroupNorm run faster on a CPU and cuDNN prefers them
        # too (benchmarks/channels_last.py, docs/performance.md). Weights stay as they are; False restores NCHW.
        self.channels_last = True
        self.post_norm = post_norm
        self.cond_channels = cond_channels if conditional else None
        self.drop_rate = drop_rate
        # Stages [0, prefix_stages) see the image alone; the twin has no conditioning anywhere.
        self.prefix_stages = len(layers) - cond_stages if (conditional and cond_stages is not None) else 0
        self.cond_stages = len(layers) - self.prefix_stages if conditional else 0

        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "default" else nn.Identity()

        self.sigma_embed = SigmaEmbedder(cond_channels, freq_dim) if conditional else None
        self.label_embed = nn.Embedding(num_classes, cond_channels) if conditional else None

        stages: list[nn.ModuleList] = []
        in_ch = stem_width
        for i, (depth, width) in enumerate(zip(layers, widths)):
            blocks = nn.ModuleList()
            cond = self.cond_channels if i >= self.prefix_stages else None
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_cls(in_ch, width, stride, cond, post_norm, norm_groups, norm_min_group_size))
                in_ch = width * block_cls.expansion
            stages.append(blocks)
        self.stages = nn.ModuleList(stages)

        self.num_features = in_ch
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)

    def conditioning_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs of the conditioning path (label/sigma embedding, per-block Linear)."""
        for name, p in self.named_parameters():
            if any(part in CONDITIONING_MODULES for part in name.split(".")):
                yield name, p

    def embed(self, c_t: Tensor, sigma: Tensor | float) -> Tensor:
        """Shared conditioning vector ``e = MLP(sinusoid(sigma)) + Embedding(c_t)``.

        Args:
            c_t: [B] integer noisy labels in ``[0, num_classes)``.
            sigma: [B] (or scalar, broadcast) noise levels sigma(t).

        Returns:
            [B, cond_channels] tensor ``e`` (before the per-block SiLU).
        """
        if self.sigma_embed is None or self.label_embed is None:
            raise ValueError("the unconditional twin has no conditioning embedding")
        if c_t.dim() != 1 or c_t.dtype.is_floating_point or c_t.dtype == torch.bool:
            raise ValueError(f"c_t must be an integer tensor of shape [B], got {c_t.dtype} {tuple(c_t.shape)}")
        sigma = torch.as_tensor(sigma, device=c_t.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(c_t.shape[0])
        if sigma.shape != c_t.shape:
            raise ValueError(f"sigma must have shape [B]={tuple(c_t.shape)} or be a scalar, got {tuple(sigma.shape)}")
        return self.sigma_embed(sigma) + self.label_embed(c_t)

    def _check_cond(self, x: Tensor, c_t: Tensor | None, sigma: Tensor | float | None) -> Tensor | None:
        """Validate the conditioning inputs; return SiLU(e) [B, cond] (conditional) or None (twin)."""
        if not self.conditional:
            if c_t is not None or sigma is not None:
                raise ValueError("this is the unconditional twin (conditional=False): call model(x) without c_t/sigma")
            return None
        if c_t is None or sigma is None:
            raise ValueError("conditional DiDiRN needs c_t ([B] long noisy labels) and sigma ([B] noise levels)")
        if c_t.shape[:1] != x.shape[:1]:
            raise ValueError(f"c_t batch {tuple(c_t.shape)} does not match x batch {x.shape[0]}")
        return nn.functional.silu(self.embed(c_t, sigma))

    def forward_prefix(self, x: Tensor) -> Tensor:
        """Images [B, in_chans, H, W] -> the image prefix: stem and unconditioned stages, [B, C_p, H_p, W_p].

        Depends on the image only, so it is the same at every diffusion step (for the full DiDiRN it is the stem).
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for stage in self.stages[: self.prefix_stages]:
            for blk in stage:
                x = blk(x)
        return x

    def forward_conditioned(
        self, prefix: Tensor, c_t: Tensor | None = None, sigma: Tensor | float | None = None
    ) -> Tensor:
        """Image prefix [B, C_p, H_p, W_p] (:meth:`forward_prefix`) -> output [B, num_classes] via the
        conditioned stages and the head (the twin: the remaining stages, unconditioned)."""
        return self.forward_head(self._conditioned_stages(prefix, self._check_cond(prefix, c_t, sigma)))

    def _conditioned_stages(self, x: Tensor, emb: Tensor | None) -> Tensor:
        """Image prefix [B, C_p, H_p, W_p] and SiLU(e) [B, cond] (or None) -> feature map [B, num_features, H', W']."""
        if self.channels_last:  # a prefix repeated for CL chains (repeat_interleave) comes back NCHW
            x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.stages[self.prefix_stages :]:
            for blk in stage:
                x = blk(x, emb)
        return x

    def forward_features(self, x: Tensor, c_t: Tensor | None = None, sigma: Tensor | float | None = None) -> Tensor:
        """Images [B, in_chans, H, W] -> final feature map [B, num_features, H', W'].

        ``H' = H/16`` for ``stem="default"`` (H/2 stem, 3 stride-2 stages), ``H/8`` for ``"small"``.
        """
        emb = self._check_cond(x, c_t, sigma)
        return self._conditioned_stages(self.forward_prefix(x), emb)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map [B, num_features, H', W'] -> logits [B, K] (or pooled [B, num_features])."""
        x = self.head_drop(self.global_pool(x).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor, c_t: Tensor | None = None, sigma: Tensor | float | None = None) -> Tensor:
        """Score / classify.

        Args:
            x: [B, in_chans, H, W] images.
            c_t: [B] long noisy labels (conditional model only).
            sigma: [B] noise levels sigma(t), or a scalar (conditional model only).

        Returns:
            [B, num_classes]: log concrete scores (conditional) or class logits (twin / plain).
        """
        return self.forward_head(self.forward_features(x, c_t, sigma))


# --------------------------------------------------------------------------------------------
# timm registration
# --------------------------------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_SMALL_GEOMETRY: dict[str, Any] = dict(block="basic", layers=(2, 2, 2, 2), widths=(16, 32, 64, 128), stem="small")
# timm create_model() / train.py kwargs with no meaning here (values of None are pruned by timm).
_IGNORED_KWARGS = frozenset(
    {
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "cache_dir",
        "scriptable",
        "exportable",
        "no_jit",
        "bn_momentum",
        "bn_eps",
        "pretrained_strict",
    }
)
_MODEL_ARGS = frozenset(inspect.signature(DiDiRN.__init__).parameters) - {"self"}


def _default_cfg(input_size: int) -> dict[str, Any]:
    return dict(
        url="",
        num_classes=1000,
        input_size=(3, input_size, input_size),
        pool_size=None,
        crop_pct=0.875,
        interpolation="bicubic",
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        first_conv="conv1",
        classifier="fc",
    )


def _create_didirn(variant: str, pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """Build a registered variant, validating timm's generic kwargs (no pretrained weights exist)."""
    if pretrained:
        raise ValueError(f"{variant}: no pretrained weights exist; use pretrained=False (or checkpoint_path=...)")
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant}: features_only is not supported")
    for key in ("drop_path_rate", "drop_block_rate"):
        if kwargs.pop(key, None):
            raise ValueError(f"{variant}: {key} > 0 is not supported (DiDiRN has no stochastic depth / DropBlock)")
    if kwargs.pop("global_pool", "avg") not in ("avg", None):
        raise ValueError(f"{variant}: only global_pool='avg' is supported")
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    unknown = sorted(k for k in kwargs if k not in _MODEL_ARGS and k not in _IGNORED_KWARGS)
    if unknown:
        warnings.warn(f"{variant}: ignoring unsupported kwargs {unknown}", stacklevel=3)
    model_kwargs = {k: v for k, v in kwargs.items() if k in _MODEL_ARGS}
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = DiDiRN(**model_kwargs)
    if dtype is not None:
        model = model.to(dtype=dtype)
    small = model_kwargs.get("stem") == "small"
    model.pretrained_cfg = dict(_default_cfg(32 if small else 224), architecture=variant, num_classes=model.num_classes)
    model.default_cfg = model.pretrained_cfg
    return model


@register_model
def didirn18(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """DiDiRN-18: BasicBlock [2, 2, 2, 2], widths 64-512, 3x3 s1 stem + max-pool (12.11M params, K=1000)."""
    model_args = dict(block="basic", layers=(2, 2, 2, 2))
    return _create_didirn("didirn18", pretrained, **dict(model_args, **kwargs))


@register_model
def didirn34(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """DiDiRN-34: BasicBlock [3, 4, 6, 3], widths 64-512, 3x3 s1 stem + max-pool (22.46M params, K=1000)."""
    model_args = dict(block="basic", layers=(3, 4, 6, 3))
    return _create_didirn("didirn34", pretrained, **dict(model_args, **kwargs))


@register_model
def didirn50(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """DiDiRN-50: Bottleneck [3, 4, 6, 3], widths 64-512 (x4), 3x3 s1 stem + max-pool (27.71M params, K=1000)."""
    model_args = dict(block="bottleneck", layers=(3, 4, 6, 3))
    return _create_didirn("didirn50", pretrained, **dict(model_args, **kwargs))


@register_model
def didirn101(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """DiDiRN-101: Bottleneck [3, 4, 23, 3], widths 64-512 (x4), 3x3 s1 stem + max-pool (48.98M params)."""
    model_args = dict(block="bottleneck", layers=(3, 4, 23, 3))
    return _create_didirn("didirn101", pretrained, **dict(model_args, **kwargs))


@register_model
def didirn152(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """DiDiRN-152: Bottleneck [3, 8, 36, 3], widths 64-512 (x4), 3x3 s1 stem + max-pool (66.63M params)."""
    model_args = dict(block="bottleneck", layers=(3, 8, 36, 3))
    return _create_didirn("didirn152", pretrained, **dict(model_args, **kwargs))


@register_model
def didirn_small(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """CPU-sized 32-px DiDiRN: BasicBlock [2, 2, 2, 2], widths 16-128, 3x3 s1 stem, no max-pool."""
    model_args = dict(_SMALL_GEOMETRY)
    return _create_didirn("didirn_small", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet_small(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
    """Plain ResNet baseline with didirn_small's widths and stem (BN only, no GroupNorm; unconditional)."""
    model_args = dict(_SMALL_GEOMETRY, conditional=False, post_norm=False)
    return _create_didirn("resnet_small", pretrained, **dict(model_args, **kwargs))


def _register_late_variant(base: Callable[..., DiDiRN], cond_stages: int) -> None:
    """Register ``{base}_late{n}``: ``base`` with only its last ``n`` stages conditioned (``cond_stages=n``)."""
    name = f"{base.__name__}_late{cond_stages}"

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> DiDiRN:
        kwargs.setdefault("cond_stages", cond_stages)
        model = base(pretrained, **kwargs)
        model.pretrained_cfg = model.default_cfg = dict(model.pretrained_cfg, architecture=name)
        return model

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (
        f"{base.__name__} with only the last {cond_stages} stage(s) conditioned on (c_t, sigma): "
        "the earlier stages run once per image across all diffusion steps."
    )
    register_model(entrypoint)


for _base in (didirn_small, didirn18, didirn50):
    for _n in (1, 2):
        _register_late_variant(_base, _n)

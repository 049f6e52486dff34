"""A small Diffusion Transformer (DiT, Peebles & Xie 2023) with representation injection points.

Shapes (B images, C latent channels, H = W = S latent size, p patch size, N = (S / p)^2 tokens, D width):

    x_t float[B, C, S, S] --patchify--> float[B, N, D] (+ fixed 2-D sin-cos positional embedding)
    t int64[B] --sinusoid + MLP--> c float[B, D]             (timestep conditioning, adaLN-Zero)
    r float[B, d_r] or None                                   (the representation or label vector)
    depth x DiTBlock(tokens, c) ; final layer: adaLN norm + Linear -> float[B, N, p*p*C] --unpatchify-->
    eps_hat float[B, C, S, S]

**Injection of r (arXiv 2505.06890, spec part A).** The paper says r is combined "with the output of a decode
layer (Norm, Linear, UnPatchify)" and "at the beginning of each of the N blocks"; the summary says "added". Our
reading, with every projection zero-initialised so that at init the model *is* the plain DiT:

* **Blocks:** one ``Linear(d_r, D)`` per block (``block_proj[i]``, not shared: each block, like its adaLN, gets
  its own view of r) whose output is added to every token at the start of block i.
* **Decode layer:** ``Linear(d_r, N * p*p*C)`` (``decode_proj``), a latent-shaped map decoded from r in token
  layout [B, N, p*p*C]. ``decode_injection="output"`` (default) adds it to the final layer's output before
  unpatchify: the decode layer (Norm, Linear, UnPatchify) is DiT's own final layer. ``"input"`` adds the same
  map, unpatchified, to x_t before patchify: the spec's reading (a), where the decode layer belongs to the
  encoder side and its output joins the noisy latent "before being fed into the denoising network". Both are
  narrow: the map is a linear function of the d_r-dimensional r, so it cannot carry more than r does.

**Spatial r** (``r_tokens=c``, the paper's decode layer read as a map): r holds c values for each of the N tokens
(flattened, d_r = N c, token order as patchify's). Each injection then acts per token with weights shared across
tokens: ``block_proj[i] = Linear(c, D)`` is added to token n from r's token n, and ``decode_proj = Linear(c, p*p*C)``
decodes each token's c values into its patch of the latent-shaped map. c < p*p*C keeps r narrower than the patch it
describes, so it cannot copy z0.

Timestep conditioning stays on DiT's adaLN-Zero path; r never enters adaLN. ``d_r=None`` builds the plain DiT
(no projections): its state dict is the rep-cond DiT's minus the ``block_proj``/``decode_proj`` keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn
from timm.layers import Attention, Mlp

from diffcls.errors import DiffclsError

__all__ = [
    "DiTConfig",
    "DIT_PRESETS",
    "dit_config",
    "DiT",
    "sincos_pos_embed_2d",
    "timestep_embedding",
    "INJECTION_PREFIXES",
]

INJECTION_PREFIXES = ("block_proj.", "decode_proj.")  # parameters that exist only in the rep-cond DiT


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of a :class:`DiT`; stored in a checkpoint's ``config.json``."""

    input_size: int  # S, the latent (or pixel) side
    in_channels: int  # C
    patch_size: int = 2
    hidden_size: int = 64
    depth: int = 2
    num_heads: int = 2
    mlp_ratio: float = 4.0
    d_r: int | None = 64  # width of r; None: the plain DiT, no injection
    decode_injection: Literal["output", "input"] = "output"
    r_tokens: int | None = None  # spatial r: values per token (d_r = tokens x r_tokens); None: one global vector

    def to_dict(self) -> dict:
        return asdict(self)


# Sizes. dit_tiny is for tests; dit_small for 16-32 px grayscale digits on a CPU (patch 4 at 32 px: 64 tokens);
# dit_s2 / dit_b2 are DiT-S/2 and DiT-B/2 (depth 12, widths 384 / 768) for GPUs and 4x32x32 VAE latents.
DIT_PRESETS: dict[str, dict] = {
    "dit_tiny": dict(patch_size=2, hidden_size=64, depth=2, num_heads=2),
    "dit_small": dict(patch_size=4, hidden_size=128, depth=6, num_heads=4),
    "dit_s2": dict(patch_size=2, hidden_size=384, depth=12, num_heads=6),
    "dit_b2": dict(patch_size=2, hidden_size=768, depth=12, num_heads=12),
}


def dit_config(name: str, input_size: int, in_channels: int, d_r: int | None = 64, **overrides) -> DiTConfig:
    """The preset ``name`` for inputs float[B, in_channels, input_size, input_size] with injection points for r
    of width ``d_r`` (None: the plain DiT); ``overrides`` (None values dropped) change any other field, e.g.
    ``patch_size=2`` for 16 px images."""
    if name not in DIT_PRESETS:
        raise DiffclsError(f"unknown DiT {name!r}; choose from {', '.join(DIT_PRESETS)}")
    fields = {**DIT_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    config = DiTConfig(input_size=input_size, in_channels=in_channels, d_r=d_r, **fields)
    if input_size % config.patch_size:
        raise DiffclsError(
            f"{name}: the input size {input_size} must be a multiple of the patch size {config.patch_size}"
        )
    if config.r_tokens is not None:
        tokens, patch = (input_size // config.patch_size) ** 2, config.patch_size**2 * in_channels
        if not 1 <= config.r_tokens < patch:
            raise DiffclsError(
                f"--r-tokens must lie in 1..{patch - 1}, fewer values than the {patch} of a token's patch, so r "
                f"cannot copy z0; got {config.r_tokens}"
            )
        if d_r != tokens * config.r_tokens:
            raise DiffclsError(f"a spatial r of {config.r_tokens} per token has d_r = {tokens} x {config.r_tokens}")
    return config


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embedding float[grid * grid, dim] (rows: y-major token order).

    Half of the channels encode the row, half the column, each as sin/cos at geometric frequencies."""
    if dim % 4:
        raise DiffclsError(f"the DiT width must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    coords = torch.arange(grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:  # [M] -> [M, dim // 2]
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], 1)

    return torch.cat([encode(yy), encode(xx)], 1).float()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps float/int[B] -> float[B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x float[B, N, D] * (1 + scale[B, D]) + shift[B, D]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """int64[B] -> float[B, D]: a 256-wide sinusoid through a two-layer SiLU MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_size))


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by c (shift, scale) and whose residual branches are
    gated (adaLN-Zero: the modulation Linear starts at zero, so the block starts as the identity)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """The decode layer: adaLN-modulated norm and Linear to p*p*C values per token (unpatchify is in DiT)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """``(x_t float[B, C, S, S], t int64[B], r float[B, d_r] | None) -> eps_hat float[B, C, S, S]`` (a spatial r:
    float[B, N * r_tokens], token-major).

    ``r=None`` skips the injection (the unconditional path); a rep-cond DiT fed ``r=None`` computes what the
    plain DiT with the same weights computes.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        self.grid = c.input_size // c.patch_size
        self.num_tokens = self.grid**2
        self.patch_dim = c.patch_size**2 * c.in_channels
        self.x_embedder = nn.Conv2d(c.in_channels, c.hidden_size, c.patch_size, stride=c.patch_size)
        self.t_embedder = TimestepEmbedder(c.hidden_size)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(c.hidden_size, self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(c.hidden_size, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.final_layer = FinalLayer(c.hidden_size, c.patch_size, c.in_channels)
        if c.d_r is not None:
            # global r: each projection reads all of r; spatial r: each reads one token's r_tokens values
            width, decoded = (
                (c.d_r, self.num_tokens * self.patch_dim) if c.r_tokens is None else (c.r_tokens, self.patch_dim)
            )
            with torch.random.fork_rng(devices=[]):  # leave the RNG as the plain DiT's construction leaves it
                self.block_proj = nn.ModuleList(nn.Linear(width, c.hidden_size) for _ in range(c.depth))
                self.decode_proj = nn.Linear(width, decoded)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: Xavier-uniform Linears, zero biases; adaLN modulation, the final Linear and every
        injection projection at zero. Under one seed, a rep-cond DiT's base weights equal the plain DiT's."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith(("block_proj", "decode_proj")):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zero = [b.adaLN_modulation[-1] for b in self.blocks]
        zero += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        if self.config.d_r is not None:
            zero += [*self.block_proj, self.decode_proj]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, C, S, S] -> float[B, N, p*p*C] (the layout of the final layer's output)."""
        b, ch, p, g = x.shape[0], self.config.in_channels, self.config.patch_size, self.grid
        return x.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, p * p * ch)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, N, p*p*C] -> float[B, C, S, S]."""
        b, ch, p, g = x.shape[0], self.config.in_channels, self.config.patch_size, self.grid
        return x.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, g * p, g * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        inject = r is not None
        if inject and self.config.d_r is None:
            raise DiffclsError("this DiT was built without injection points (d_r=None) but got r")
        spatial = self.config.r_tokens is not None
        if inject and spatial:
            r = r.view(len(r), self.num_tokens, self.config.r_tokens)  # [B, N, c]: token n's values
        decoded = self.decode_proj(r).view(-1, self.num_tokens, self.patch_dim) if inject else None
        if inject and self.config.decode_injection == "input":
            x = x + self.unpatchify(decoded)
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed  # [B, N, D]
        c = self.t_embedder(t)
        for i, block in enumerate(self.blocks):
            if inject:
                h = h + (self.block_proj[i](r) if spatial else self.block_proj[i](r)[:, None])
            h = block(h, c)
        out = self.final_layer(h, c)  # [B, N, p*p*C]
        if inject and self.config.decode_injection == "output":
            out = out + decoded
        return self.unpatchify(out)

"""Generative evidence without FID: images sampled from a (rep- or label-) conditioned DiT, and the held-out
denoising loss at each t with and without the condition.

* :func:`sample_latents`: DDIM (diffusers' ``DDIMScheduler``, eta 0, the training schedule) from shared seeded
  noise, conditioned on what the model's condition reads (the clean latents of held-out images for a rep-cond
  model, class labels for a tuned one, nothing for an unconditional one);
* :func:`denoising_loss_by_t`: ``mean ||eps - eps_hat(z_t, t, cond)||^2`` over held-out latents at each t of a
  grid, one fixed noise per image and t, for the condition and for its null vector (the "matching t" comparison
  of a rep-cond DiT against an unconditional one: same images, same t, same noise).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from torchvision.utils import make_grid

from diffcls.generative.scoring import add_noise

from .model import RepCondModel

__all__ = ["sample_latents", "denoising_loss_by_t", "image_grid"]


@torch.no_grad()
def sample_latents(
    model: RepCondModel,
    cond: torch.Tensor | None,
    shape: tuple[int, ...],
    num: int,
    alphas_cumprod: torch.Tensor,
    steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """``num`` latents float[num, *shape] by DDIM in ``steps`` steps; ``cond`` what the condition reads (``num``
    rows: clean latents or labels) or None."""
    model.eval()
    device = next(model.parameters()).device
    betas = 1 - alphas_cumprod.double() / torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod.double()[:-1]])
    scheduler = DDIMScheduler(num_train_timesteps=len(alphas_cumprod), trained_betas=betas.tolist(), clip_sample=False)
    scheduler.set_timesteps(steps)
    x = torch.randn(num, *shape, generator=torch.Generator().manual_seed(seed)).to(device)
    for t in scheduler.timesteps:
        eps = model(x, torch.full((num,), int(t), device=device), cond)
        x = scheduler.step(eps, t, x).prev_sample
    return x


@torch.no_grad()
def denoising_loss_by_t(
    model: RepCondModel,
    z0: torch.Tensor,
    cond: torch.Tensor | None,
    alphas_cumprod: torch.Tensor,
    timesteps: list[int],
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, list[float]]:
    """Held-out eps-MSE at each t: ``{"t": [...], "loss": [...], "loss_null": [...]}`` (``loss_null`` with the
    condition replaced by its null vector; absent for an unconditional model). The noise of image i at t depends
    only on (seed, t), so two models scored with the same seed see the same z_t."""
    model.eval()
    losses, nulls = [], []
    for t in timesteps:
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + t)).to(z0.device)
        total, total_null = 0.0, 0.0
        for i in range(0, len(z0), batch_size):
            z, n = z0[i : i + batch_size], noise[i : i + batch_size]
            c = None if cond is None else cond[i : i + batch_size]
            steps = torch.full((len(z),), t, device=z.device)
            z_t = add_noise(z, alphas_cumprod, steps, n)
            total += (model(z_t, steps, c) - n).pow(2).mean(dim=(1, 2, 3)).sum().item()
            if c is not None:
                drop = torch.ones(len(z), dtype=torch.bool, device=z.device)
                total_null += (model(z_t, steps, c, drop) - n).pow(2).mean(dim=(1, 2, 3)).sum().item()
        losses.append(total / len(z0))
        nulls.append(total_null / len(z0))
    out = {"t": list(timesteps), "loss": losses}
    if cond is not None:
        out["loss_null"] = nulls
    return out


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """float[N, C, S, S] in [-1, 1] -> one uint8 image [rows * S, columns * S, C] (empty cells black), by
    torchvision's ``make_grid``."""
    grid = make_grid(images.clamp(-1, 1).cpu(), nrow=columns, padding=0, pad_value=-1.0)
    grid = grid[: images.shape[1]]  # make_grid repeats a single channel three times
    return ((grid.permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8)

"""Sampling and the per-t held-out loss, against closed forms: a denoiser that knows the data is one point
(the class prototype) must sample that point; the loss of a known predictor is computed directly."""

from __future__ import annotations

import torch
import torch.nn as nn

from diffcls.repcond.sampling import denoising_loss_by_t, image_grid, sample_latents
from oracle_diffusion import ALPHAS_CUMPROD, oracle_eps_fn


class Oracle(nn.Module):
    """``model(x_t, t, labels, drop=None)``: the exact eps if class c's data were prototypes[c] (the null label:
    the zero image)."""

    def __init__(self, prototypes: torch.Tensor):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # so the sampler finds a device
        self.eps = oracle_eps_fn(torch.cat([prototypes, torch.zeros_like(prototypes[:1])]))
        self.null = len(prototypes)

    def forward(self, x_t, t, labels, drop=None):
        if drop is not None:
            labels = torch.where(drop, self.null, labels)
        return self.eps(x_t.float(), t, labels)


def test_ddim_with_the_exact_score_of_a_point_returns_the_point():
    prototypes = torch.rand(3, 1, 4, 4) * 2 - 1
    samples = sample_latents(Oracle(prototypes), torch.tensor([2, 0, 1]), (1, 4, 4), 3, ALPHAS_CUMPROD, steps=20)
    torch.testing.assert_close(samples, prototypes[[2, 0, 1]], atol=1e-3, rtol=0)


def test_denoising_loss_by_t_against_a_direct_computation():
    prototypes = torch.rand(2, 1, 4, 4) * 2 - 1
    model = Oracle(prototypes)
    z0 = prototypes[[0, 1, 1]] + 0.1 * torch.randn(3, 1, 4, 4)
    labels = torch.tensor([0, 1, 1])
    out = denoising_loss_by_t(model, z0, labels, ALPHAS_CUMPROD, [100, 800], seed=5, batch_size=2)
    for j, t in enumerate([100, 800]):
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(5 * 1_000_003 + t))
        abar = ALPHAS_CUMPROD[t].float()
        z_t = abar.sqrt() * z0 + (1 - abar).sqrt() * noise
        steps = torch.full((3,), t)
        expected = (model(z_t, steps, labels) - noise).pow(2).mean().item()
        null = (model(z_t, steps, torch.full((3,), 2)) - noise).pow(2).mean().item()
        assert abs(out["loss"][j] - expected) < 1e-6 and abs(out["loss_null"][j] - null) < 1e-6
    assert out["loss"][0] < out["loss_null"][0]  # the right prototype explains z_t better than the zero image


def test_image_grid_layout():
    images = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0)])
    grid = image_grid(images, columns=2)
    assert grid.shape == (4, 4, 1) and grid.dtype == torch.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 2, 0] == 128 and grid[2, 0, 0] == 255 and grid[2, 2, 0] == 0

"""Per-image early stopping: classes race on shared (t, eps) pairs and leave as soon as a paired test says they lose.

The Diffusion Classifier's scores are paired: every class of an image is scored on the same timesteps and noises,
so differences between classes at one (t, eps) cancel most of the variance that the errors have across t. The
test runs on the differences of *log* errors, ``d_k(t) = log e_k(t) - log e_leader(t)``: errors at small t are up
to 10^4 times those at large t (for an exact denoiser, e_k(t) = abar/(1 - abar) D_k), so raw differences are
dominated by a few timesteps, while their log-ratio is about as large at every t.
:func:`classify_racing` scores the classes still in the race in *looks* of ``chunk`` new timesteps (spread over
the grid in the nested order of :func:`~diffcls.generative.adaptive.nested_order`), and after each look drops
every class whose mean difference to the current leader is significantly positive:

    mean(d_k) / (sd(d_k) / sqrt(n)) > q,   q = the Student-t quantile (n - 1 degrees of freedom) at 1 - alpha / (m L)

with m = K - 1 competitors and L looks (a Bonferroni bound over both), the leader being the lowest mean error.
An image stops when one class is left; the others run to the full grid of M timesteps, where the lowest mean error
among the classes still racing decides (the paper's rule). **Error rate:** if the paired log-error differences of
the class with the lowest expected log error are roughly normal, the chance that it is dropped before the end is
at most ``alpha`` (the union bound over every competitor and look); easy images stop after one or two looks, hard
ones pay up to K M.

Probabilities are stage-wise as for successive elimination (each look is a stage; a dropped class keeps the
share it had when it left), so they sum to 1; the prediction is the class left in the race (or the lowest mean
error among those still racing at M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.stats import t as student_t
from torch import Tensor

from diffcls.errors import DiffclsError

from .adaptive import Schedule, nested_order, stagewise_probabilities
from .scoring import EpsFn, Loss, noise_levels, per_sample_error, timestep_grid

__all__ = ["RaceResult", "classify_racing", "pair_errors", "racing_threshold"]


@torch.inference_mode()
def pair_errors(
    eps_fn: EpsFn,
    x0: Tensor,
    images: Tensor,
    classes: Tensor,
    timesteps: Tensor,
    noise: Tensor,
    alphas_cumprod: Tensor,
    *,
    loss: Loss = "l2",
    batch_size: int = 256,
) -> Tensor:
    """Errors of explicit (image, class) pairs at every timestep: float32[P, J], exactly P J network rows.

    Args:
        x0: float[B, C, H, W]; images, classes: int64[P], pair p is class ``classes[p]`` of image ``images[p]``.
        timesteps: int64[J]; noise: float[B, J, C, H, W], noise[b, j] shared by every class of image b at t_j.
    """
    signal, sigma = noise_levels(alphas_cumprod, timesteps, x0)
    num_pairs, num_t = len(images), len(timesteps)
    errors = torch.empty(num_pairs * num_t, dtype=torch.float32, device=x0.device)
    for start in range(0, num_pairs * num_t, batch_size):
        row = torch.arange(start, min(start + batch_size, num_pairs * num_t), device=x0.device)
        p, j = row // num_t, row % num_t
        b = images.to(x0.device)[p]
        eps = noise[b, j]
        x_t = signal[j].view(-1, 1, 1, 1) * x0[b] + sigma[j].view(-1, 1, 1, 1) * eps
        eps_hat = eps_fn(x_t, timesteps.to(x0.device)[j], classes.to(x0.device)[p])[:, : x0.shape[1]]
        errors[row] = per_sample_error(eps, eps_hat.to(eps.dtype), loss).float()
    return errors.view(num_pairs, num_t)


def racing_threshold(alpha: float, competitors: int, looks: int, n: int) -> float:
    """The t-statistic a class must exceed to be dropped after ``n`` timesteps (see the module docstring)."""
    if not 0.0 < alpha < 1.0:
        raise DiffclsError(f"the early-stopping error rate must lie in (0, 1), got {alpha}")
    return float(student_t.ppf(1.0 - alpha / (max(competitors, 1) * looks), max(n - 1, 1)))


@dataclass
class RaceResult:
    """What :func:`classify_racing` returns for B images and K classes.

    errors: float32[B, K, M], NaN where a class was not scored; stage_means: float64[B, L, K], each class's mean
    error over its timesteps at look l, NaN if it was out of the race (or the image had stopped) by then;
    prediction: int64[B]; nfe: int64[B], network evaluations of each image.
    """

    errors: Tensor
    stage_means: Tensor
    prediction: Tensor
    nfe: Tensor

    def probabilities(self, temperature: float = 1.0) -> Tensor:
        return stagewise_probabilities(self.stage_means, temperature).float()


def classify_racing(
    eps_fn: EpsFn,
    x0: Tensor,
    num_classes: int,
    alphas_cumprod: Tensor,
    num_timesteps: int,
    noise: Tensor,
    *,
    chunk: int = 5,
    alpha: float = 0.01,
    loss: Loss = "l2",
    batch_size: int = 256,
    candidates: Tensor | None = None,
) -> RaceResult:
    """Classify a batch with per-image early stopping (module docstring): at most ``num_timesteps`` = M
    timesteps of the evenly spaced grid, ``chunk`` more per look. ``noise``: float[M, C, H, W] (shared) or
    float[B, M, C, H, W], noise m with grid timestep m. ``candidates``: int64[B, P] with P >= 2, the classes each
    image races (a proposer's top-P, the hybrid readout; the others are never scored and the Bonferroni bound
    counts P - 1 competitors); None: all K."""
    if not 2 <= chunk <= num_timesteps:
        raise DiffclsError(f"the early-stopping chunk must lie in 2..{num_timesteps} timesteps, got {chunk}")
    if candidates is not None and candidates.shape[1] < 2:
        raise DiffclsError("early stopping races at least 2 classes per image")
    num_images, device = len(x0), x0.device
    if noise.dim() == x0.dim():
        noise = noise[None].expand(num_images, *noise.shape)
    grid = timestep_grid(num_timesteps, len(alphas_cumprod)).to(device)
    order = torch.as_tensor(
        nested_order(Schedule((chunk, num_timesteps), (2, 1))) if chunk < num_timesteps else range(num_timesteps)
    )
    looks = math.ceil(num_timesteps / chunk)
    errors = torch.full((num_images, num_classes, num_timesteps), float("nan"), device=device)
    racing = torch.ones(num_images, num_classes, dtype=torch.bool, device=device)
    if candidates is not None:
        racing = torch.zeros_like(racing).scatter(1, candidates.to(device).long(), True)
    competitors = int(racing.sum(1).max()) - 1
    stage_means = torch.full((num_images, looks, num_classes), float("nan"), dtype=torch.float64, device=device)
    rows = torch.arange(num_images, device=device)
    for look in range(looks):
        new = order[look * chunk : (look + 1) * chunk].to(device)
        seen = order[: (look + 1) * chunk].to(device)
        running = racing.sum(1) > 1  # images that have not stopped
        if not running.any():
            break
        images, classes = torch.nonzero(racing & running[:, None], as_tuple=True)
        scored = pair_errors(
            eps_fn, x0, images, classes, grid[new], noise[:, new], alphas_cumprod, loss=loss, batch_size=batch_size
        )
        errors[images[:, None], classes[:, None], new[None]] = scored
        so_far = errors[:, :, seen].double()  # [B, K, n]; NaN outside the race
        means = so_far.mean(-1)
        stage_means[:, look] = torch.where(racing & running[:, None], means, torch.nan)
        leader = torch.where(racing, means, torch.inf).argmin(1)
        logs = so_far.clamp_min(1e-30).log()
        diff = logs - logs[rows, leader][:, None]  # paired log-error differences to the leader, [B, K, n]
        n = diff.shape[-1]
        spread = diff.std(-1).clamp_min(1e-12)
        statistic = diff.mean(-1) / (spread / math.sqrt(n))
        q = racing_threshold(alpha, competitors, looks, n)
        beaten = racing & running[:, None] & (statistic > q)
        beaten[rows, leader] = False
        racing &= ~beaten
    final = torch.where(racing, errors.double().nanmean(-1), torch.inf)
    nfe = (~errors.isnan()).sum((1, 2))
    return RaceResult(errors, stage_means, final.argmin(1), nfe)

"""Per-class noise-prediction errors with shared noise and timesteps (Diffusion Classifier, Li et al. 2023, §3).

For an image x0 and candidate class c the classifier scores

    e(x0, c, t, eps) = mean over (C, H, W) of L(eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c))

and ranks classes by the mean of e over a set of pairs (t_j, eps_j). Every class sees **the same** pairs: the
comparison is a paired difference test, so the large variance of e across (t, eps) cancels between classes.

Any network works through one signature (as k-diffusion's samplers take the model as a callable):

    eps_fn(x_t: float[N, C, H, W], t: int64[N], class_labels: int64[N]) -> eps_hat: float[N, C', H, W]

with C' >= C; channels beyond C (a learned-variance head, as DiT's) are ignored. A network that gives every
class's prediction in one pass (a multi-head UNet, :func:`~diffcls.models.noise_predictors.scores_all_classes`)
also offers ``all_class_heads(x_t, t) -> float[N, K, C, H, W]``, and is called once per (image, t).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcls.errors import DiffclsError
from diffcls.models.noise_predictors import scores_all_classes

__all__ = [
    "EpsFn",
    "LOSSES",
    "add_noise",
    "noise_levels",
    "timestep_grid",
    "per_sample_error",
    "noise_prediction_errors",
]

EpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]
Loss = Literal["l2", "l1", "huber"]
LOSSES: tuple[str, ...] = ("l2", "l1", "huber")


def timestep_grid(num_timesteps: int, num_train_timesteps: int = 1000) -> Tensor:
    """Evenly spaced timesteps ``t_k = T//M//2 + k * (T//M)``, k = 0..M-1: int64[M] (the reference code's grid).

    M=500 gives 1, 3, ..., 999; M=1000 gives 0..999; M=250 gives 2, 6, ..., 998.
    """
    if not 1 <= num_timesteps <= num_train_timesteps:
        raise DiffclsError(f"the number of timesteps must be in 1..{num_train_timesteps}, got {num_timesteps}")
    stride = num_train_timesteps // num_timesteps
    return stride // 2 + stride * torch.arange(num_timesteps)


def per_sample_error(target: Tensor, prediction: Tensor, loss: Loss = "l2") -> Tensor:
    """Mean of the elementwise loss over all but the first dimension: float[N] for inputs [N, ...].

    ``huber`` uses delta = 1, as the reference code.
    """
    if loss == "l2":
        elementwise = (target - prediction).square()
    elif loss == "l1":
        elementwise = (target - prediction).abs()
    elif loss == "huber":
        elementwise = F.huber_loss(prediction, target, reduction="none", delta=1.0)
    else:
        raise DiffclsError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    return elementwise.flatten(1).mean(1)


@torch.inference_mode()
def noise_prediction_errors(
    eps_fn: EpsFn,
    x0: Tensor,
    classes: Tensor,
    timesteps: Tensor,
    noise: Tensor,
    alphas_cumprod: Tensor,
    *,
    loss: Loss = "l2",
    batch_size: int = 256,
) -> Tensor:
    """Errors of every candidate class of every image at every (timestep, noise) pair.

    Rows are laid out so that all candidates of one image at one (t, eps) are adjacent and share one forward
    pass (the chunk size is rounded down to a multiple of the number of candidates); x_t is built once per
    (image, t) and repeated across candidates. A multi-head network gets each x_t once and gives every head.

    Args:
        eps_fn: the noise predictor (see the module docstring).
        x0: clean images or latents, float[B, C, H, W].
        classes: candidate class labels per image, int64[B, A] (A may be K, or the classes still alive).
        timesteps: int64[J], the same for every image.
        noise: float[B, J, C, H, W]; noise[b, j] goes with timesteps[j] for every candidate of image b. Pass a
            shared bank ``bank[None].expand(B, ...)`` to use the same noise for every image.
        alphas_cumprod: float[T], the scheduler's cumulative product of alphas.
        loss: ``l2`` (default), ``l1`` or ``huber``; a mean over (C, H, W).
        batch_size: network rows per forward pass.
    Returns:
        float32[B, A, J].
    """
    num_images, num_candidates = classes.shape
    num_t = len(timesteps)
    if noise.shape[:2] != (num_images, num_t) or noise.shape[2:] != x0.shape[1:]:
        raise DiffclsError(f"noise must have shape {(num_images, num_t, *x0.shape[1:])}, got {tuple(noise.shape)}")
    signal, sigma = noise_levels(alphas_cumprod, timesteps, x0)
    # Row r = (j * B + b) * A + a: candidates of one (image, t) are adjacent.
    pairs = num_t * num_images
    one_pass = scores_all_classes(eps_fn)
    per_chunk = batch_size if one_pass else max(1, batch_size // num_candidates)
    errors = torch.empty(num_t, num_images, num_candidates, dtype=torch.float32, device=x0.device)
    for start in range(0, pairs, per_chunk):
        pair = torch.arange(start, min(start + per_chunk, pairs), device=x0.device)
        j, b = pair // num_images, pair % num_images
        eps = noise[b, j]  # [P, C, H, W]
        x_t = signal[j].view(-1, 1, 1, 1) * x0[b] + sigma[j].view(-1, 1, 1, 1) * eps
        if one_pass:  # every head from one pass; keep each image's candidates: [P, A, C, H, W] -> rows
            heads = eps_fn.all_class_heads(x_t, timesteps.to(x0.device)[j])
            eps_hat = heads[torch.arange(len(pair), device=x0.device)[:, None], classes[b]].flatten(0, 1)
        else:
            rows_t = timesteps.to(x0.device)[j].repeat_interleave(num_candidates)
            eps_hat = eps_fn(x_t.repeat_interleave(num_candidates, 0), rows_t, classes[b].reshape(-1))
        eps_hat = eps_hat[:, : x0.shape[1]]  # drop learned-variance channels
        err = per_sample_error(eps.repeat_interleave(num_candidates, 0), eps_hat.to(eps.dtype), loss)
        errors[j, b] = err.view(-1, num_candidates).float()
    return errors.permute(1, 2, 0).contiguous()


def noise_levels(alphas_cumprod: Tensor, timesteps: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(sqrt(abar_t), sqrt(1 - abar_t))`` for int64[J] timesteps, in ``like``'s dtype and device (computed in
    float64): x_t = signal[j] x0 + sigma[j] eps."""
    abar = alphas_cumprod.to(device=like.device, dtype=torch.float64)[timesteps.to(like.device)]
    return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)


def add_noise(x0: Tensor, alphas_cumprod: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """DDPM's forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` for x0, noise ``[B, ...]`` and
    t ``int64[B]`` (the training objectives' noising; scoring above builds its rows in its own layout)."""
    a = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1))).float()
    return a.sqrt() * x0 + (1 - a).sqrt() * noise

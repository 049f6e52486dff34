"""DiDiCM training objectives: score entropy on the uniform label process.

Per sample, with ratios r_j and network log-scores s (entry c_t ignored),
    l = (1/K) sum_{j != c_t} [exp(s_j) - r_j s_j + r_j (log r_j - 1)],
a Bregman divergence that is >= 0 and minimised at s_j = log r_j. The batch
objective weights it by sigma'(t) with t ~ U(sampling_eps, 1) (SEDD's ELBO weight).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .noise import Noise
from .process import UniformProcess, mask_reference, sample_categorical

__all__ = ["denoising_score_entropy", "soft_score_entropy", "didicm_loss", "SOFT_LOG_SCORE_CLAMP"]

SOFT_LOG_SCORE_CLAMP = 20.0
SOFT_RATIO_RANGE = (1e-10, 1e10)

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _float(x: Tensor) -> Tensor:
    """Upcast half-precision network outputs; keep float32/float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def denoising_score_entropy(log_score: Tensor, c_t: Tensor, c_0: Tensor, sigma: Tensor) -> Tensor:
    """Hard-label denoising score entropy in closed form (before the sigma' weight).

    Targets r_j = q_sigma(j|c_0) / q_sigma(c_t|c_0). With a = expm1(sigma) and rho = a/(a+K):
    c_t == c_0 gives r_j = rho for all j != c_t; c_t != c_0 gives r_{c_0} = 1/rho = 1 + K/a
    and r_j = 1 otherwise.

    Args:
        log_score: (B, K) network log concrete scores; column c_t is ignored.
        c_t: (B,) noisy labels. c_0: (B,) clean labels. sigma: (B,) or scalar total noise, > 0.
    Returns:
        (B,) per-sample loss.
    """
    k = log_score.shape[-1]
    s = mask_reference(_float(log_score), c_t)
    sigma = torch.as_tensor(sigma, device=s.device).to(s.dtype).expand(c_t.shape)
    exp_sum = s.exp().sum(-1) - 1.0  # drop exp(0) of the masked c_t entry
    s_sum = s.sum(-1)
    s_c0 = s.gather(-1, c_0.unsqueeze(-1)).squeeze(-1)

    a = torch.expm1(sigma)
    log_rho = torch.log(a) - torch.log(a + k)  # log-space: rho ~ sigma/K as sigma -> 0
    rho = log_rho.exp()
    # c_t == c_0: all K-1 ratios equal rho.
    same = exp_sum - rho * s_sum + (k - 1) * rho * (log_rho - 1.0)
    # c_t != c_0: sum_j r_j s_j = s_sum + (1/rho - 1) s_{c_0}; k(1) = -1 for the K-2 unit ratios.
    inv_rho = 1.0 + k / a
    diff = exp_sum - s_sum - (k / a) * s_c0 - (k - 2) + inv_rho * (-log_rho - 1.0)
    return torch.where(c_t == c_0, same, diff) / k


def soft_score_entropy(log_score: Tensor, c_t: Tensor, p_t: Tensor) -> Tensor:
    """Score entropy with exact ratios r_j = p_t(j) / p_t(c_t) (soft targets).

    Ratios are clamped to [1e-10, 1e10] and log-scores to +-20 for stability.

    Args:
        log_score: (B, K) network log concrete scores; column c_t is ignored.
        c_t: (B,) noisy labels. p_t: (B, K) noisy marginal, strictly positive.
    Returns:
        (B,) per-sample loss.
    """
    k = log_score.shape[-1]
    s = _float(log_score).clamp(-SOFT_LOG_SCORE_CLAMP, SOFT_LOG_SCORE_CLAMP)
    p_t = p_t.to(s.dtype)
    r = (p_t / p_t.gather(-1, c_t.unsqueeze(-1))).clamp(*SOFT_RATIO_RANGE)
    terms = s.exp() - r * s + r * (r.log() - 1.0)
    return mask_reference(terms, c_t).sum(-1) / k


def didicm_loss(
    score_fn: ScoreFn,
    target: Tensor,
    num_classes: int,
    noise: Noise,
    *,
    sampling_eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DiDiCM training objective: mean over the batch of sigma'(t) * score entropy.

    Args:
        score_fn: ``score_fn(c_t (B,) long, sigma (B,)) -> (B, K)`` raw log-scores, image bound.
        target: LongTensor (B,) hard labels -> closed-form DSE, or float (B, K) soft targets
            (mixup/cutmix/smoothing) -> exact-ratio loss with c_t ~ p_t.
        num_classes: K.
        noise: schedule giving (sigma, sigma') at t.
        sampling_eps: t ~ U(sampling_eps, 1).
        generator: optional RNG for t and c_t (must live on ``target``'s device).
    Returns:
        Scalar loss.
    """
    batch, device = target.shape[0], target.device
    t = sampling_eps + (1.0 - sampling_eps) * torch.rand(batch, generator=generator, device=device)
    sigma, dsigma = noise(t)
    process = UniformProcess(num_classes)
    if not target.is_floating_point():
        c_t = process.sample_transition(target, sigma, generator)
        loss = denoising_score_entropy(score_fn(c_t, sigma), c_t, target, sigma)
    else:
        p_t = process.marginal(target.float(), sigma).clamp_min(1e-10)
        p_t = p_t / p_t.sum(-1, keepdim=True)
        c_t = sample_categorical(p_t, generator)
        loss = soft_score_entropy(score_fn(c_t, sigma), c_t, p_t)
    return (dsigma * loss).mean()

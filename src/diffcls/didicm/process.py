"""The uniform label-diffusion process of DiDiCM (SEDD's ``Uniform`` graph).

Rate matrix Q = 11^T / K - I. Its eigenvalues are 0 (on 1) and -1, so
exp(sigma Q) = e^{-sigma} I + (1 - e^{-sigma}) 11^T / K and every marginal has the
closed form q_sigma = e^{-sigma} p_0 + (1 - e^{-sigma}) / K. We evaluate
1 - e^{-sigma} as ``-expm1(-sigma)`` so sigma down to 1e-8 stays exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["UniformProcess", "sample_categorical", "mask_reference", "LOG_SCORE_CLAMP"]

LOG_SCORE_CLAMP = 50.0
"""Log-ratios are clamped to +-this before exponentiating in the samplers, so an
untrained network cannot overflow float64 (exact scores at sigma >= 1e-5 stay < 30)."""


def _column(sigma: Tensor | float, like: Tensor) -> Tensor:
    """sigma as a (B, 1) or (1, 1) column in a float dtype on ``like``'s device."""
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    sigma = torch.as_tensor(sigma, device=like.device)
    if sigma.is_floating_point():
        dtype = torch.promote_types(dtype, sigma.dtype)
    return sigma.to(dtype).reshape(-1, 1)


def sample_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one class per row of ``probs`` (B, K) (unnormalised is fine) -> LongTensor (B,)."""
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def mask_reference(log_score: Tensor, c_t: Tensor) -> Tensor:
    """Set the entry at the reference label ``c_t`` (B,) of ``log_score`` (B, K) to 0.

    The concrete score s_c = p(c)/p(c) = 1 is known, so the network's value is ignored.
    """
    return log_score.masked_fill(F.one_hot(c_t, log_score.shape[-1]).bool(), 0.0)


class UniformProcess:
    """Uniform CTMC over ``num_classes`` labels, indexed by total noise sigma."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError("need at least 2 classes")
        self.num_classes = num_classes

    def rate_matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
        """Q (K, K) = 11^T / K - I; columns sum to 0."""
        k = self.num_classes
        return torch.full((k, k), 1.0 / k, dtype=dtype, device=device) - torch.eye(k, dtype=dtype, device=device)

    def marginal(self, p0: Tensor, sigma: Tensor | float) -> Tensor:
        """q_sigma = exp(sigma Q) p0 -> (B, K).

        Args:
            p0: hard labels LongTensor (B,) or probabilities (B, K).
            sigma: total noise, (B,) or scalar.
        """
        if not p0.is_floating_point():
            p0 = F.one_hot(p0, self.num_classes).to(_column(sigma, p0).dtype)
        sigma = _column(sigma, p0)
        return torch.exp(-sigma) * p0 - torch.expm1(-sigma) / self.num_classes

    def transition_prob(self, c_t: Tensor, c_0: Tensor, sigma: Tensor | float) -> Tensor:
        """q_sigma(c_t | c_0) (B,) for LongTensors ``c_t``, ``c_0`` (B,)."""
        sigma = _column(sigma, torch.empty(0, device=c_t.device)).squeeze(-1)
        return torch.exp(-sigma) * (c_t == c_0) - torch.expm1(-sigma) / self.num_classes

    def sample_transition(self, c_0: Tensor, sigma: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
        """Noisy labels c_t ~ q_sigma(. | c_0) -> LongTensor (B,).

        With probability 1 - e^{-sigma} the label is redrawn uniformly over all K
        classes (itself included), otherwise it is kept.
        """
        sigma = _column(sigma, torch.empty(0, device=c_0.device)).squeeze(-1).expand(c_0.shape)
        move = torch.rand(c_0.shape, generator=generator, device=c_0.device, dtype=sigma.dtype) < -torch.expm1(-sigma)
        fresh = torch.randint(self.num_classes, c_0.shape, generator=generator, device=c_0.device)
        return torch.where(move, fresh, c_0)

    def denoise(self, p_sigma: Tensor, sigma: Tensor | float) -> Tensor:
        """Invert the marginal: p0 = (p_sigma - (1 - e^{-sigma})/K) e^{sigma} (B, K).

        Negative entries (an imperfect ``p_sigma``) are clamped to 0 and rows renormalised.
        """
        sigma = _column(sigma, p_sigma)
        p0 = (p_sigma + torch.expm1(-sigma) / self.num_classes) * torch.exp(sigma)
        p0 = p0.clamp_min(0.0)
        return p0 / p0.sum(-1, keepdim=True)

    def reverse_marginal(self, pi: Tensor, sigma: Tensor | float, sigma_next: Tensor | float) -> Tensor:
        """Exact (Tweedie) reverse step: from p_sigma = ``pi`` (B, K) to p_{sigma_next}.

        Denoise to p0, then re-noise to ``sigma_next`` <= sigma; sigma_next = 0 returns p0.
        Equals exp(-(sigma - sigma_next) Q) pi whenever that is a valid distribution.
        """
        return self.marginal(self.denoise(pi, sigma), sigma_next)

    def reverse_rate_matvec(self, p: Tensor, pi: Tensor) -> Tensor:
        """(R p) (B, K) for the reverse-time generator built from the estimate ``pi`` of p_sigma.

        R[i, j] = (pi_i / pi_j) Q[j, i] for i != j, columns summing to 0. With A = sum_j p_j / pi_j,
        (R p)_i = (pi_i A - p_i / pi_i) / K, which is O(K) per row instead of O(K^2).
        """
        w = p / pi
        return (pi * w.sum(-1, keepdim=True) - w) / self.num_classes

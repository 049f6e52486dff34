"""Timestep weights for the Diffusion Classifier, fitted on held-out images (a cost lever: issue 21).

The paper ranks classes by the *uniform* mean of the errors over t. Timesteps differ in how well they separate
classes (at large t every class predicts the noise about equally well; at small t the errors are large and noisy),
so a weighted mean ``score_k = mean_t w_t e_k(t)`` can reach the same accuracy with fewer timesteps, or more
accuracy with the same. :func:`fit_timestep_weights` fits ``w`` (and the temperature λ of softmax(−λ score)) by
NLL on held-out images' per-timestep errors, with a ridge on the log-weights towards uniform so that 50 weights
do not overfit a few hundred images; the weights are normalised to mean 1, so λ keeps its meaning.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffcls.errors import DiffclsError

__all__ = ["fit_timestep_weights", "weighted_scores"]


def weighted_scores(errors: Tensor, weights: Tensor) -> Tensor:
    """``mean_t w_t e_k(t)``: float64[N, K] from errors float[N, K, M] and weights float[M]."""
    return (errors.double() * weights.double().to(errors.device)).mean(-1)


def fit_timestep_weights(
    errors: Tensor, labels: Tensor, ridge: float = 0.01, iterations: int = 100
) -> tuple[Tensor, float]:
    """(weights float64[M] with mean 1, λ) minimising the NLL of ``labels`` int64[N] under
    softmax(−λ mean_t w_t e_k(t)) on per-timestep errors float[N, K, M], plus ``ridge`` × the variance of log w."""
    if len(labels) < 2 or errors.ndim != 3 or len(errors) != len(labels):
        raise DiffclsError("fitting timestep weights needs per-timestep errors [N, K, M] of at least 2 images")
    errors, labels = errors.double().cpu(), labels.long().cpu()
    scale = errors.mean((0, 1)).clamp_min(1e-30)  # each t's typical error: the weights start on a common footing
    x = errors / scale
    log_w = torch.zeros(x.shape[-1], dtype=torch.float64, requires_grad=True)
    log_lam = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_w, log_lam], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = -log_lam.exp() * (x * log_w.exp()).mean(-1)
        loss = torch.nn.functional.cross_entropy(logits, labels) + ridge * log_w.var()
        loss.backward()
        return loss

    optimizer.step(closure)
    raw = log_w.detach().exp() / scale  # weights on the errors as they are
    mean = raw.mean()
    return raw / mean, float(log_lam.detach().exp() * mean)

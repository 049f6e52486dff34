"""Temperature scaling of predicted probabilities, fitted by NLL on held-out images.

Every contender ends in class probabilities, not all in logits (DiDiCM's CP sampler returns a distribution, the
Diffusion Classifier a softmax over errors), so the temperature acts on log-probabilities:
``p_T ∝ p^(1/T)``, i.e. ``softmax(log p / T)``. For a softmax classifier this is exactly logits / T; for the
Diffusion Classifier it is its λ divided by T. The argmax never changes, so top-1 stays; NLL, Brier, ECE and the
selective metrics change. Probabilities are floored at the NLL's floor (1e-12) first, so a class with p = 0 (a CL
histogram over a few chains) gets (1e-12)^(1/T) before normalising: a fit with T > 1 can soften those zeros, and
the fit and the scaled output see the same numbers.

The NLL of ``softmax(z / T)`` is convex in 1/T (log-sum-exp of functions linear in 1/T), hence unimodal in
log T, so a golden-section search on log10 T finds its minimum (:func:`golden_section_log10`, shared with the
Diffusion Classifier's λ fit).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffcls.errors import DiffclsError
from diffcls.inference.metrics import NLL_FLOOR, classification_metrics, negative_log_likelihood, posterior_metrics

# The metrics temperature scaling changes (top-1 and ties stay), reported after it as ``post_<name>``.
POST_METRICS = ("nll", "brier", "ece", "ece_adaptive", "aurc", "augrc")

# Searched range of log10 T: 0.01 (sharpen a nearly uniform output 100×) to 100.
LOG10_T_RANGE = (-2.0, 2.0)


def golden_section_log10(nll: Callable[[float], float], low: float, high: float, tolerance: float = 1e-3) -> float:
    """The x in [low, high] minimising the unimodal ``nll(x)`` (golden-section search); returns ``10 ** x``."""
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = nll(d)
    return 10 ** ((a + b) / 2)


def scale_probabilities(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``probs`` float[N, K] at ``temperature``: rows ∝ max(p, 1e-12)^(1/T), in the dtype of ``probs``."""
    if temperature <= 0 or not math.isfinite(temperature):
        raise DiffclsError(f"a temperature must be a positive number, got {temperature}")
    return torch.softmax(_floored_log(probs) / temperature, dim=1).to(probs.dtype)


def _floored_log(probs: torch.Tensor) -> torch.Tensor:
    return probs.double().clamp_min(NLL_FLOOR).log()


def fit_probability_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [10**-2, 10**2] minimising the NLL of ``labels`` int64[N] under ``scale_probabilities(probs, T)``
    (``probs`` float[N, K] of held-out images)."""
    if len(labels) < 2:
        raise DiffclsError("fitting a temperature needs at least 2 held-out images")
    logp = _floored_log(probs)

    def nll(log10_t: float) -> float:
        return negative_log_likelihood(torch.softmax(logp / 10**log10_t, dim=1), labels.long())

    return golden_section_log10(nll, *LOG10_T_RANGE)


def post_metrics(
    probs: torch.Tensor, labels: torch.Tensor, temperature: float, posterior: torch.Tensor | None = None
) -> dict:
    """``post_<metric>`` for each of :data:`POST_METRICS` (and ``post_kl_to_bayes`` given the exact
    ``posterior``): the metrics of ``probs`` float[N, K] at ``temperature``."""
    scaled_probs = scale_probabilities(probs, temperature)
    scaled = classification_metrics(scaled_probs, labels.long())
    out = {f"post_{name}": scaled[name] for name in POST_METRICS}
    if posterior is not None:
        out["post_kl_to_bayes"] = posterior_metrics(scaled_probs, labels, posterior)["kl_to_bayes"]
    return out

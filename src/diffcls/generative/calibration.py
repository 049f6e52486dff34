"""Temperature of the Diffusion Classifier's Bayes rule, fitted by NLL on held-out images.

The per-class errors are means over pixels, so softmax(-error) is nearly uniform (the reference code's issues
#23 and #35). With logits -lambda * error and lambda fitted on held-out data, NLL and ECE become meaningful; the
argmax does not change. The NLL is convex in lambda (a sum of log-sum-exp terms of functions linear in lambda),
hence unimodal in log lambda, so a golden-section search over log10 lambda finds its minimum (the search of
:mod:`diffcls.inference.calibration`, which scales any contender's probabilities the same way).
"""

from __future__ import annotations

from torch import Tensor

from diffcls.errors import DiffclsError
from diffcls.inference.calibration import golden_section_log10

from .adaptive import pool_candidates, stagewise_probabilities

__all__ = ["nll_at", "fit_temperature"]


def nll_at(temperature: float, stage_means: Tensor, labels: Tensor, candidate_classes: Tensor | None = None) -> float:
    """Mean negative log-likelihood of ``labels`` int64[N] under stage means float[N, S, P] at ``temperature``;
    with ``candidate_classes`` int64[P], candidates (prompts) are pooled into their classes first."""
    probs = pool_candidates(stagewise_probabilities(stage_means, temperature), candidate_classes)
    return -probs.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log().mean().item()


def fit_temperature(
    stage_means: Tensor,
    labels: Tensor,
    candidate_classes: Tensor | None = None,
    low: float = -2.0,
    high: float = 8.0,
    tolerance: float = 1e-3,
) -> float:
    """The lambda in [10**low, 10**high] minimising the NLL of ``labels`` (golden-section search on log10)."""
    if len(labels) < 2:
        raise DiffclsError("fitting a temperature needs at least 2 held-out images")

    def nll(log10_temperature: float) -> float:
        return nll_at(10**log10_temperature, stage_means, labels, candidate_classes)

    return golden_section_log10(nll, low, high, tolerance)

"""Out-of-distribution detection from class probabilities: uncertainty scores and the detection metrics.

A score is an *uncertainty*: higher means "more likely out of distribution". OOD images are the positive class,
as in torch-uncertainty and the OpenOOD benchmarks:

- ``ood_auroc``: area under the ROC curve of telling OOD from in-distribution images by the score (0.5 = chance);
- ``ood_aupr``: average precision with OOD as the positive class (scikit-learn's ``average_precision_score``);
- ``ood_fpr95``: the fraction of OOD images *accepted* (scored at or below the threshold) at the threshold that
  accepts 95% of the in-distribution images (lower is better).

Scores every classifier has (:data:`OOD_SCORES`): ``msp`` (one minus the maximum probability; the default, as
in Hendrycks & Gimpel 2017) and ``entropy`` (predictive entropy in nats).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from diffcls.errors import DiffclsError

OOD_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "msp": lambda probs: 1 - probs.double().max(dim=1).values,
    "entropy": lambda probs: -(probs.double() * probs.double().clamp_min(1e-300).log()).sum(dim=1),
}
ACCEPTED_IN_DISTRIBUTION = 0.95  # the operating point of ood_fpr95


def ood_scores(probs: torch.Tensor, name: str = "msp") -> torch.Tensor:
    """The uncertainty score ``name`` of each row of ``probs`` float[N, K]: float64[N], higher = more likely OOD."""
    if name not in OOD_SCORES:
        raise DiffclsError(f"unknown OOD score {name!r}; choose from {', '.join(OOD_SCORES)}")
    return OOD_SCORES[name](probs)


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> dict:
    """``ood_auroc``, ``ood_aupr`` and ``ood_fpr95`` of uncertainty scores of in-distribution (float[N]) and OOD
    (float[M]) images."""
    if len(in_scores) == 0 or len(out_scores) == 0:
        raise DiffclsError("OOD detection needs in-distribution and OOD images")
    scores = np.concatenate([np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)])
    is_ood = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    return {
        "ood_auroc": float(roc_auc_score(is_ood, scores)),
        "ood_aupr": float(average_precision_score(is_ood, scores)),
        "ood_fpr95": false_positive_rate_at(in_scores, out_scores, ACCEPTED_IN_DISTRIBUTION),
    }


def false_positive_rate_at(in_scores: torch.Tensor, out_scores: torch.Tensor, accepted: float) -> float:
    """The fraction of OOD scores at or below the smallest threshold that accepts at least ``accepted`` of the
    in-distribution scores (the ⌈accepted · N⌉-th smallest)."""
    ordered = np.sort(np.asarray(in_scores, dtype=np.float64))
    threshold = ordered[max(math.ceil(accepted * len(ordered)) - 1, 0)]
    return float((np.asarray(out_scores, dtype=np.float64) <= threshold).mean())


def all_ood_metrics(
    in_probs: torch.Tensor,
    out_probs: torch.Tensor,
    in_native: dict[str, torch.Tensor] | None = None,
    out_native: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict]:
    """``{score name: ood_metrics}`` for every score of :data:`OOD_SCORES` (from the probabilities float[N, K] of
    the in-distribution and float[M, K] of the OOD images), then for every method-native score given per image
    (``{name: float[N]}`` and ``{name: float[M]}``)."""
    by_score = {name: ood_metrics(ood_scores(in_probs, name), ood_scores(out_probs, name)) for name in OOD_SCORES}
    for name in in_native or {}:
        by_score[name] = ood_metrics(in_native[name], out_native[name])
    return by_score


MSP_HISTOGRAM_BINS = 20  # equal bins over [0, 1] of the msp score (1 - max p)


def msp_histogram(probs: torch.Tensor) -> list[int]:
    """Counts of the ``msp`` score of ``probs`` float[N, K] in :data:`MSP_HISTOGRAM_BINS` equal bins over [0, 1]
    (what the OOD histograms plot: fixed bins, so counts add up over seeds)."""
    counts, _ = np.histogram(ood_scores(probs, "msp").numpy(), bins=MSP_HISTOGRAM_BINS, range=(0.0, 1.0))
    return counts.tolist()

"""Independent numpy computations that tests compare the library's metrics against."""

from __future__ import annotations

import numpy as np


def numpy_ood(in_scores: np.ndarray, out_scores: np.ndarray) -> dict:
    """AUROC as the Mann-Whitney pair count (ties count half), AP as the mean precision at each OOD image (ties
    broken pessimistically never matter here: continuous scores), FPR at 95% TPR of the ID side."""
    pairs = (out_scores[:, None] > in_scores[None, :]).mean() + 0.5 * (out_scores[:, None] == in_scores[None, :]).mean()
    scores = np.concatenate([in_scores, out_scores])
    positive = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(positive[order])
    precision_at_hits = (hits / np.arange(1, len(scores) + 1))[positive[order] == 1]
    threshold = np.sort(in_scores)[int(np.ceil(0.95 * len(in_scores))) - 1]
    return {"ood_auroc": pairs, "ood_aupr": precision_at_hits.mean(), "ood_fpr95": (out_scores <= threshold).mean()}

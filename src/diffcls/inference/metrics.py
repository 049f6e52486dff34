"""Classification metrics from predicted class probabilities: top-k accuracy, the proper scores (NLL, Brier),
calibration (ECE over equal-width and equal-mass bins), selective classification (AURC, AUGRC), tie rate and
per-class accuracy, under the names torch-uncertainty and uncertainty-baselines use.

Every metric takes ``probs: float[N, K]`` (rows sum to 1) and ``labels: int64[N]``. Diffusion samplers can put
exactly zero mass on a class (a CL histogram over 10 chains, say), so the NLL clamps probabilities at
``NLL_FLOOR`` = 1e-12: a confidently wrong zero costs −log(1e-12) ≈ 27.6 nats instead of infinity.

Confidence is the largest probability of a row and the prediction its argmax. Selective metrics rank images by
confidence, highest first; equal confidences keep data-set order (a stable sort), so results are reproducible.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

NLL_FLOOR = 1e-12
ECE_BINS = 15


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """bool[N]: whether each row's label is among its k most probable classes (k is capped at K; ties broken as
    ``torch.topk`` breaks them, which every top-k number of the library shares)."""
    topk = probs.topk(min(k, probs.shape[1]), dim=1).indices
    return (topk == labels[:, None]).any(dim=1)


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose label is among the k most probable classes (k is capped at K)."""
    return topk_correct(probs, labels, k).float().mean().item()


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of −log p(label), with p clamped below at ``NLL_FLOOR``."""
    p = probs.double().gather(1, labels[:, None]).clamp_min(NLL_FLOOR)
    return -p.log().mean().item()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """L1 ECE over ``n_bins`` equal-width confidence bins (torchmetrics' MulticlassCalibrationError)."""
    return multiclass_calibration_error(
        probs.float(), labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
    ).item()


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multi-class Brier score: mean over images of Σ_k (p_k − 1[k = y])² (0 is perfect, 2 the worst)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return (probs.double() - onehot).pow(2).sum(dim=1).mean().item()


def adaptive_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """L1 ECE over ``n_bins`` equal-mass bins: images sorted by confidence and cut into ``n_bins`` runs of
    (nearly) equal size (sizes differ by at most one, larger runs first, as ``numpy.array_split``); Σ_b (n_b / N)
    |accuracy_b − mean confidence_b|. Fewer images than bins: one bin per image."""
    if len(labels) == 0:
        return 0.0
    confidence, correct = _confidence_and_correct(probs, labels)
    order = confidence.argsort(stable=True)
    gaps = [
        (correct[run].mean() - confidence[run].mean()).abs() * len(run)
        for run in order.tensor_split(min(n_bins, len(order)))
        if len(run)
    ]
    return (sum(gaps) / len(order)).item()


def risk_coverage(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The risk–coverage curve of selective classification: keeping the i most confident images (i = 1..N),
    coverage i/N and risk = error rate among them. Returns ``(coverage, risk)``, float64[N] each."""
    confidence, correct = _confidence_and_correct(probs, labels)
    order = (-confidence).argsort(stable=True)
    errors = (1 - correct[order]).cumsum(0)
    kept = torch.arange(1, len(order) + 1, dtype=torch.float64)
    return kept / len(order), errors / kept


def area_under_risk_coverage(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """AURC: the mean over i = 1..N of the error rate of the i most confident images (lower is better; a
    classifier that ranks all its errors last reaches the minimum for its accuracy)."""
    return risk_coverage(probs, labels)[1].mean().item() if len(labels) else 0.0


def area_under_generalized_risk_coverage(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """AUGRC (Traub et al., 2024): the mean over i = 1..N of (errors among the i most confident images) / N, the
    rate of silent failures at each coverage; unlike AURC it does not weigh the first few images most."""
    coverage, risk = risk_coverage(probs, labels)
    return (coverage * risk).mean().item() if len(labels) else 0.0


def _confidence_and_correct(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the largest probability and whether the argmax is the label, float64[N] each."""
    return probs.double().max(dim=1).values, topk_correct(probs, labels).double()


def posterior_metrics(probs: torch.Tensor, labels: torch.Tensor, posterior: torch.Tensor) -> dict:
    """Against the exact Bayes posterior ``posterior`` float[N, K] of the same images (generated data such as
    ``gaussmix``): ``bayes_top1`` and ``bayes_nll`` (the best any classifier can score on these images, in
    expectation) and ``kl_to_bayes`` = mean over images of KL(posterior ‖ probs) in nats, with ``probs`` floored
    at ``NLL_FLOOR`` like the NLL (0 only for the posterior itself)."""
    q = posterior.double()
    p = probs.double().clamp_min(NLL_FLOOR)
    kl = torch.where(q > 0, q * (q.clamp_min(1e-300).log() - p.log()), torch.zeros_like(q)).sum(dim=1)
    return {
        "bayes_top1": topk_accuracy(q, labels.long(), 1),
        "bayes_nll": negative_log_likelihood(q, labels.long()),
        "kl_to_bayes": kl.mean().item(),
    }


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per confidence bin ``(i/n, (i+1)/n]``: image count, summed confidence and summed correctness.

    Sums rather than means, so bins of several evaluations (seeds, corruptions) pool by addition; the ECE of
    pooled bins is ``Σ |correct_b − confidence_b| / N``. Returns lists of length ``n_bins``.
    """
    confidence, predicted = probs.float().max(dim=1)
    correct = (predicted == labels).float()
    index = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.zeros(n_bins).index_add_(0, index, confidence)
    correct_sum = torch.zeros(n_bins).index_add_(0, index, correct)
    return {
        "count": count.tolist(),
        "confidence": [round(v, 6) for v in conf_sum.tolist()],
        "correct": correct_sum.tolist(),
    }


def ece_from_bins(bins: dict[str, list]) -> float:
    """L1 ECE of (possibly pooled) :func:`reliability_bins`."""
    total = sum(bins["count"])
    gaps = (abs(a - c) for a, c in zip(bins["correct"], bins["confidence"]))
    return sum(gaps) / max(total, 1)


def per_class_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> list[float | None]:
    """Top-1 accuracy of each class; ``None`` for classes absent from ``labels``."""
    k = probs.shape[1]
    acc = multiclass_accuracy(probs.float(), labels, num_classes=k, average=None)
    present = torch.bincount(labels, minlength=k) > 0
    return [round(a, 6) if p else None for a, p in zip(acc.tolist(), present.tolist())]


def tie_rate(probs: torch.Tensor, rtol: float = 0.0) -> float:
    """Fraction of rows of ``probs`` (float[N, K]) whose largest probability is shared: the second largest is
    within ``rtol`` of the largest (relative; the default counts exact ties only, which is what the reference CP
    sampler produces). 0 for N = 0 or K < 2.

    Ties matter because argmax (and so top-1) breaks them by class index, not by the model: a sampler that ends
    in ties (DiDiCM-CP's reference Euler step clamps every overshooting class to 1) scores the lowest-indexed of
    the tied classes, and its confidence is split evenly among them.
    """
    if probs.shape[0] == 0 or probs.shape[1] < 2:
        return 0.0
    top2 = probs.double().topk(2, dim=1).values  # (N, 2)
    return (top2[:, 0] - top2[:, 1] <= rtol * top2[:, 0]).double().mean().item()


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """All metrics as a JSON-ready dict: ``top1``, ``top5`` (fractions), ``nll``, ``brier``, ``ece``,
    ``ece_adaptive``, ``aurc``, ``augrc``, ``tie_rate`` (see :func:`tie_rate`), ``num_samples``,
    ``per_class_top1``."""
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be N×K with N = len(labels); got {tuple(probs.shape)} and {len(labels)}")
    labels = labels.long()
    return {
        "top1": topk_accuracy(probs, labels, 1),
        "top5": topk_accuracy(probs, labels, 5),
        "nll": negative_log_likelihood(probs, labels),
        "brier": brier_score(probs, labels),
        "ece": expected_calibration_error(probs, labels),
        "ece_adaptive": adaptive_calibration_error(probs, labels),
        "aurc": area_under_risk_coverage(probs, labels),
        "augrc": area_under_generalized_risk_coverage(probs, labels),
        "tie_rate": tie_rate(probs),
        "num_samples": int(len(labels)),
        "per_class_top1": per_class_accuracy(probs, labels),
    }

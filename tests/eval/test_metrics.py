"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import torch

from diffcls.inference.metrics import NLL_FLOOR, classification_metrics, expected_calibration_error

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]])
LABELS = torch.tensor([0, 2, 2, 1])


def test_metrics_match_hand_computation():
    m = classification_metrics(PROBS, LABELS)
    assert m["top1"] == 0.5  # rows 0 and 2 are right
    assert m["top5"] == 1.0  # K=3 < 5: every label is in the top 3
    nll = -(math.log(0.7) + math.log(0.4) + math.log(0.4) + math.log(0.05)) / 4
    assert abs(m["nll"] - nll) < 1e-6  # float32 probabilities
    # One sample per bin: |acc - conf| = 0.3, 0.5, 0.6, 0.9
    assert abs(m["ece"] - (0.3 + 0.5 + 0.6 + 0.9) / 4) < 1e-6
    assert m["per_class_top1"] == [1.0, 0.0, 0.5]


def test_top2_and_absent_class():
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.7, 0.0]])
    m = classification_metrics(probs, torch.tensor([1, 0]))
    assert m["top1"] == 0.0 and m["per_class_top1"][2] is None and m["per_class_top1"][3] is None
    from diffcls.inference.metrics import topk_accuracy

    assert topk_accuracy(probs, torch.tensor([1, 0]), 2) == 0.5


def test_nll_floor_for_zero_probability():
    m = classification_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert abs(m["nll"] + math.log(NLL_FLOOR)) < 1e-9


def test_ece_of_a_calibrated_predictor_is_small():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(20000, generator=g) * 0.5 + 0.5
    correct = torch.rand(20000, generator=g) < conf
    labels = torch.where(correct, 0, 1)
    probs = torch.stack([conf, 1 - conf], 1)
    assert expected_calibration_error(probs, labels) < 0.02


def test_reliability_bins_pool_to_the_torchmetrics_ece():
    from diffcls.inference.metrics import ece_from_bins, reliability_bins

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 7, generator=gen), dim=1)
    labels = torch.randint(0, 7, (500,), generator=gen)
    bins = reliability_bins(probs, labels)
    assert sum(bins["count"]) == 500 and len(bins["count"]) == 15
    assert abs(ece_from_bins(bins) - expected_calibration_error(probs, labels)) < 1e-5
    # Bins of two halves add up to the bins of the whole.
    a, b = reliability_bins(probs[:200], labels[:200]), reliability_bins(probs[200:], labels[200:])
    pooled = {k: [x + y for x, y in zip(a[k], b[k])] for k in a}
    assert abs(ece_from_bins(pooled) - ece_from_bins(bins)) < 1e-5


# ------------------------------------------------------------------- proper scores, equal-mass ECE, selective risk

# Confidence order, highest first: row 3 (0.9, wrong), row 0 (0.8, right), row 2 (0.7, right), row 1 (0.6, right).
SELECTIVE_PROBS = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.9, 0.1]])
SELECTIVE_LABELS = torch.tensor([0, 1, 1, 1])


def test_brier_equal_mass_ece_aurc_and_augrc_by_hand():
    from diffcls.inference.metrics import adaptive_calibration_error

    m = classification_metrics(SELECTIVE_PROBS, SELECTIVE_LABELS)
    # Σ_k (p_k − 1[k=y])² per row: 0.08, 0.32, 0.18, 1.62.
    assert abs(m["brier"] - (0.08 + 0.32 + 0.18 + 1.62) / 4) < 1e-6
    # Risk of the i most confident: 1/1, 1/2, 1/3, 1/4; errors among them / N: 1/4 each.
    assert abs(m["aurc"] - (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) < 1e-9
    assert abs(m["augrc"] - 0.25) < 1e-9
    # Two equal-mass bins by confidence: {0.6 right, 0.7 right} and {0.8 right, 0.9 wrong}.
    two_bins = (abs(1.0 - 0.65) * 2 + abs(0.5 - 0.85) * 2) / 4
    assert abs(adaptive_calibration_error(SELECTIVE_PROBS, SELECTIVE_LABELS, n_bins=2) - two_bins) < 1e-6
    # 15 bins but 4 images: one image per bin, the same as the equal-width ECE here.
    assert abs(m["ece_adaptive"] - (0.4 + 0.3 + 0.2 + 0.9) / 4) < 1e-6


def test_selective_and_calibration_metrics_against_loops(tmp_path):
    """Against plain-Python loops on random probabilities (with repeated confidences)."""
    from diffcls.inference.metrics import adaptive_calibration_error

    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(2 * torch.randn(203, 6, generator=gen), dim=1)
    probs[::7] = probs[0]  # ties in confidence: ranked in data-set order
    labels = torch.randint(0, 6, (203,), generator=gen)
    m = classification_metrics(probs, labels)
    rows = [(p.max().item(), int(p.argmax() == y), p.tolist(), int(y)) for p, y in zip(probs, labels)]
    brier = sum(sum((pk - (k == y)) ** 2 for k, pk in enumerate(p)) for _, _, p, y in rows) / len(rows)
    ranked = sorted(range(len(rows)), key=lambda i: (-rows[i][0], i))
    errors, risks, generalized = 0, [], []
    for i, idx in enumerate(ranked, 1):
        errors += 1 - rows[idx][1]
        risks.append(errors / i)
        generalized.append(errors / len(rows))
    by_confidence = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))
    sizes = [len(rows) // 15 + (b < len(rows) % 15) for b in range(15)]
    ece, start = 0.0, 0
    for size in sizes:
        run = by_confidence[start : start + size]
        start += size
        ece += abs(sum(rows[i][1] for i in run) - sum(rows[i][0] for i in run))
    assert abs(m["brier"] - brier) < 1e-9
    assert abs(m["aurc"] - sum(risks) / len(risks)) < 1e-12
    assert abs(m["augrc"] - sum(generalized) / len(generalized)) < 1e-12
    assert abs(adaptive_calibration_error(probs, labels) - ece / len(rows)) < 1e-9 and ece > 0


def test_a_perfect_ranking_reaches_the_lowest_aurc():
    """Errors ranked last: AURC = the mean risk of an oracle; ranked first it is far higher."""
    from diffcls.inference.metrics import area_under_risk_coverage

    right = torch.tensor([[0.9, 0.1]] * 8)
    labels = torch.tensor([0] * 8 + [1] * 2)
    best = area_under_risk_coverage(torch.cat([right, torch.tensor([[0.6, 0.4]] * 2)]), labels)
    worst = area_under_risk_coverage(torch.cat([right, torch.tensor([[0.99, 0.01]] * 2)]), labels)
    assert abs(best - sum(max(i - 8, 0) / i for i in range(1, 11)) / 10) < 1e-12
    assert abs(worst - (1 + 1 + sum(2 / i for i in range(3, 11))) / 10) < 1e-12


# ------------------------------------------------------------------------------------------ temperature scaling


def test_temperature_scaling_is_softmax_of_logits_over_t_and_keeps_the_argmax():
    from diffcls.inference.calibration import scale_probabilities

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]])
    for t in (0.5, 1.0, 3.0):
        scaled = scale_probabilities(torch.softmax(logits, 1), t)
        assert torch.allclose(scaled, torch.softmax(logits / t, 1), atol=1e-6)
        assert torch.equal(scaled.argmax(1), logits.argmax(1))


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    """Labels drawn from softmax(z); the model reports softmax(3 z) (overconfident): the fit finds T ≈ 3 and
    lowers the NLL to that of the true probabilities."""
    from diffcls.inference.calibration import fit_probability_temperature, scale_probabilities

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=gen)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=gen).squeeze(1)
    overconfident = torch.softmax(3 * z, 1)
    t = fit_probability_temperature(overconfident, labels)
    assert abs(t - 3) < 0.1
    nll = classification_metrics(scale_probabilities(overconfident, t), labels)["nll"]
    assert abs(nll - classification_metrics(torch.softmax(z, 1), labels)["nll"]) < 0.005
    assert nll < classification_metrics(overconfident, labels)["nll"] - 0.3


def test_a_zero_on_the_label_keeps_the_fit_finite():
    from diffcls.inference.calibration import fit_probability_temperature, scale_probabilities

    histogram = torch.tensor([[1.0, 0.0], [0.7, 0.3], [0.0, 1.0], [0.9, 0.1]])  # a CL histogram: row 2 is wrong
    t = fit_probability_temperature(histogram, torch.tensor([0, 0, 0, 1]))
    assert 1 < t < 100 and torch.all(scale_probabilities(histogram, t) > 0)

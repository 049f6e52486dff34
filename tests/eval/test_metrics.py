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

"""Temperature fit: the golden-section minimum against a brute-force grid, and a known optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.generative.adaptive import stagewise_probabilities
from diffcls.generative.calibration import fit_temperature, nll_at


def synthetic_stage_means(n=300, k=5, gap=2e-3, spread=1e-3, seed=0):
    """Flat schedule: errors ~0.3 per class (nearly equal, as real ones), the true class lower by ``gap``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(k, (n,), generator=g)
    errors = 0.3 + spread * torch.randn(n, k, generator=g)
    errors[torch.arange(n), labels] -= gap
    return errors[:, None, :], labels


def test_fit_matches_a_brute_force_grid():
    means, labels = synthetic_stage_means()
    fitted = fit_temperature(means, labels)
    grid = 10 ** np.linspace(-2, 8, 2001)
    nlls = [nll_at(lam, means, labels) for lam in grid]
    assert nll_at(fitted, means, labels) <= min(nlls) + 1e-6
    assert abs(math.log10(fitted) - math.log10(grid[int(np.argmin(nlls))])) < 0.02
    assert fitted > 100  # softmax(-error) itself (lambda = 1) is nearly uniform
    assert nll_at(fitted, means, labels) < nll_at(1.0, means, labels) - 0.3


def test_two_classes_with_a_constant_gap_recover_the_logistic_optimum():
    # Two classes whose error gap is d for all images; the true class is the better one in a fraction q of them.
    # NLL(lambda) = -q log sigmoid(lambda d) - (1 - q) log sigmoid(-lambda d), minimal at lambda d = logit(q).
    d, q, n = 0.01, 0.8, 1000
    labels = torch.zeros(n, dtype=torch.long)
    labels[int(q * n) :] = 1
    means = torch.tensor([[0.5, 0.5 + d]]).repeat(n, 1)[:, None, :]
    assert fit_temperature(means, labels) == pytest.approx(math.log(q / (1 - q)) / d, rel=1e-2)


def test_stagewise_probabilities_are_differentiable_and_normalised():
    means = torch.tensor([[[0.3, 0.31, 0.32, 0.33], [0.2, 0.22, float("nan"), float("nan")]]])
    lam = torch.tensor(50.0, requires_grad=True)
    probs = stagewise_probabilities(means, lam)
    assert probs.sum().item() == pytest.approx(1.0)
    probs[0, 0].log().backward()
    assert lam.grad is not None and lam.grad.item() > 0  # sharper is better when class 0 wins every stage


def test_too_few_images():
    with pytest.raises(DiffclsError):
        fit_temperature(torch.zeros(1, 1, 3), torch.zeros(1, dtype=torch.long))

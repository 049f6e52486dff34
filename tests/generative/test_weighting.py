"""Timestep weights fitted on held-out errors: informative timesteps gain weight, and held-out accuracy with them
beats the uniform mean when most timesteps only add noise."""

from __future__ import annotations

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.generative.weighting import fit_timestep_weights, weighted_scores


def synthetic_errors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K = 4 classes, M = 10 timesteps: at t 0-1 the true class's error is lower by 0.3 (noise 0.3); t 2-9 carry
    no signal and 10x the noise, so the uniform mean is mostly noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, (n,), generator=g)
    errors = torch.ones(n, 4, 10, dtype=torch.float64) + 0.3 * torch.randn(n, 4, 10, generator=g, dtype=torch.float64)
    errors[:, :, 2:] += 3.0 * torch.randn(n, 4, 8, generator=g, dtype=torch.float64)
    errors[torch.arange(n), labels, :2] -= 0.3
    return errors.abs(), labels


def test_fitted_weights_find_the_informative_timesteps():
    errors, labels = synthetic_errors(400, 0)
    weights, lam = fit_timestep_weights(errors, labels)
    assert weights.mean().item() == pytest.approx(1.0) and lam > 0
    assert weights[:2].min() > 3 * weights[2:].max()
    test_errors, test_labels = synthetic_errors(2000, 1)  # held out: fresh draws
    uniform = (test_errors.mean(-1).argmin(1) == test_labels).double().mean()
    weighted = (weighted_scores(test_errors, weights).argmin(1) == test_labels).double().mean()
    assert weighted > uniform + 0.1


def test_weights_need_per_timestep_errors_of_two_images():
    with pytest.raises(DiffclsError, match="at least 2 images"):
        fit_timestep_weights(torch.ones(1, 3, 5), torch.zeros(1, dtype=torch.long))

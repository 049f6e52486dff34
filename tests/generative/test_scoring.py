"""Per-class noise-prediction errors: the grid, the losses, the paired noise, and a closed-form oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffcls.errors import DiffclsError
from diffcls.generative.scoring import noise_prediction_errors, per_sample_error, timestep_grid
from oracle_diffusion import ALPHAS_CUMPROD, oracle_eps_fn


def test_timestep_grid_matches_the_reference_rule():
    assert timestep_grid(500).tolist() == list(range(1, 1000, 2))
    assert timestep_grid(1000).tolist() == list(range(1000))
    assert timestep_grid(250).tolist() == list(range(2, 1000, 4))
    with pytest.raises(DiffclsError):
        timestep_grid(0)
    with pytest.raises(DiffclsError):
        timestep_grid(1001)


def test_per_sample_error_losses():
    a, b = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4) * 2
    d = (a - b).flatten(1)
    torch.testing.assert_close(per_sample_error(a, b, "l2"), (d**2).mean(1))
    torch.testing.assert_close(per_sample_error(a, b, "l1"), d.abs().mean(1))
    huber = torch.where(d.abs() < 1, 0.5 * d**2, d.abs() - 0.5).mean(1)
    torch.testing.assert_close(per_sample_error(a, b, "huber"), huber)
    with pytest.raises(DiffclsError, match="unknown loss"):
        per_sample_error(a, b, "l3")


def test_oracle_errors_match_the_closed_form():
    torch.manual_seed(0)
    prototypes = torch.randn(4, 1, 6, 6)
    x0 = prototypes[[2, 0]] + 0.1 * torch.randn(2, 1, 6, 6)
    classes = torch.tensor([[0, 1, 2, 3], [3, 0, 1, 2]])
    t = torch.tensor([10, 400, 900])
    noise = torch.randn(2, 3, 1, 6, 6)
    errors = noise_prediction_errors(oracle_eps_fn(prototypes), x0, classes, t, noise, ALPHAS_CUMPROD)
    abar = ALPHAS_CUMPROD[t].float()
    expected = torch.stack(
        [
            torch.stack([abar / (1 - abar) * (x0[b] - prototypes[c]).square().mean() for c in classes[b]])
            for b in range(2)
        ]
    )
    assert errors.shape == (2, 4, 3)
    torch.testing.assert_close(errors, expected, rtol=1e-4, atol=1e-6)
    assert errors[0].mean(-1).argmin() == 2 and classes[1, errors[1].mean(-1).argmin()] == 0


def test_every_class_sees_the_same_noisy_input_and_timestep():
    torch.manual_seed(1)
    x0, classes = torch.randn(3, 2, 4, 4), torch.tensor([[0, 1, 2]] * 3)
    t, noise = torch.tensor([5, 500]), torch.randn(3, 2, 2, 4, 4)
    seen = []

    def recording_eps_fn(x_t, t_rows, labels):
        seen.extend(zip(x_t.clone(), t_rows.tolist(), labels.tolist()))
        return torch.zeros_like(x_t)

    noise_prediction_errors(recording_eps_fn, x0, classes, t, noise, ALPHAS_CUMPROD, batch_size=4)
    assert len(seen) == 3 * 3 * 2
    for b in range(3):
        for j, step in enumerate(t.tolist()):
            abar = ALPHAS_CUMPROD[step].float()
            expected = abar.sqrt() * x0[b] + (1 - abar).sqrt() * noise[b, j]
            rows = [(x, lab) for x, tt, lab in seen if tt == step and torch.allclose(x, expected, atol=1e-6)]
            assert sorted(lab for _, lab in rows) == [0, 1, 2]  # all classes, one shared x_t


def test_chunking_and_learned_variance_channels_do_not_change_errors():
    torch.manual_seed(2)
    prototypes = torch.randn(5, 3, 4, 4)
    oracle = oracle_eps_fn(prototypes)

    def with_variance_head(x_t, t, labels):  # DiT-style: eps in the first C channels, garbage after
        return torch.cat([oracle(x_t, t, labels), 1e3 * torch.randn_like(x_t)], 1)

    x0, classes = torch.randn(2, 3, 4, 4), torch.tensor([[0, 1, 2, 3, 4]] * 2)
    t, noise = timestep_grid(7), torch.randn(2, 7, 3, 4, 4)
    a = noise_prediction_errors(oracle, x0, classes, t, noise, ALPHAS_CUMPROD, batch_size=1)
    b = noise_prediction_errors(with_variance_head, x0, classes, t, noise, ALPHAS_CUMPROD, batch_size=1000, loss="l2")
    torch.testing.assert_close(a, b)


def test_wrong_noise_shape_is_a_clear_error():
    with pytest.raises(DiffclsError, match="noise must have shape"):
        noise_prediction_errors(
            lambda x, t, c: x,
            torch.zeros(2, 1, 4, 4),
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([1, 2]),
            torch.zeros(2, 3, 1, 4, 4),
            ALPHAS_CUMPROD,
        )


def test_huber_equals_torch_on_large_errors():
    a, b = torch.full((1, 4), 3.0), torch.zeros(1, 4)
    assert per_sample_error(a, b, "huber").item() == pytest.approx(F.huber_loss(b, a).item()) == 2.5

"""Diffusion Classifier Zero: reconstruction errors, the single-t rule, the t-sweep, aggregation and F1."""

from __future__ import annotations

import pytest
import torch

from diffcls.generative.scoring import noise_prediction_errors
from diffcls.repcond.dc_zero import (
    classification_scores,
    dc_zero_errors,
    dc_zero_predict,
    sweep_timesteps,
    t_sweep,
    timestep_noise,
)
from oracle_diffusion import ALPHAS_CUMPROD, oracle_eps_fn


def random_eps_fn(num_classes: int, shape: tuple[int, ...], seed: int = 0):
    """A deterministic class-dependent 'denoiser': eps_hat = tanh(x_t + bias_c) * (1 + t / 1000)."""
    bias = torch.randn(num_classes, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def eps_fn(x_t, t, labels):
        return torch.tanh(x_t + bias[labels]) * (1 + t.view(-1, 1, 1, 1) / 1000)

    return eps_fn


def test_errors_are_the_reconstruction_errors_of_z0():
    k, shape = 4, (2, 4, 4)
    eps_fn = random_eps_fn(k, shape)
    z0 = torch.randn(5, *shape, dtype=torch.float64)
    timesteps = torch.tensor([10, 400, 900])
    noise = torch.randn(3, *shape, dtype=torch.float64)
    errors = dc_zero_errors(eps_fn, z0, k, ALPHAS_CUMPROD, timesteps, noise, batch_size=7)
    assert errors.shape == (5, k, 3)
    for j, t in enumerate(timesteps.tolist()):  # independently: z0_hat(c) = (z_t - delta eps_hat_c) / gamma
        gamma, delta = ALPHAS_CUMPROD[t].sqrt(), (1 - ALPHAS_CUMPROD[t]).sqrt()
        z_t = gamma * z0 + delta * noise[j]
        for c in range(k):
            eps_hat = eps_fn(z_t, torch.full((5,), t), torch.full((5,), c))
            z0_hat = (z_t - delta * eps_hat) / gamma
            expected = (z0 - z0_hat).square().flatten(1).mean(1)
            torch.testing.assert_close(errors[:, c, j].double(), expected, rtol=1e-5, atol=1e-9)
    # The identity z0 - z0_hat = (delta / gamma)(eps_hat - eps): at one t the argmin is the eps-error argmin.
    eps_errors = noise_prediction_errors(
        eps_fn, z0, torch.arange(k).expand(5, -1), timesteps, noise[None].expand(5, -1, -1, -1, -1), ALPHAS_CUMPROD
    )
    for j in range(3):
        assert torch.equal(dc_zero_predict(errors[:, :, [j]]), eps_errors[:, :, j].argmin(1))


def test_an_oracle_denoiser_is_classified_correctly_at_any_t():
    prototypes = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 5
    z0 = prototypes[labels] + 0.3 * torch.randn(20, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    eps_fn = oracle_eps_fn(prototypes)
    for t in (50, 500, 950):
        errors = dc_zero_errors(eps_fn, z0, 5, ALPHAS_CUMPROD, t, timestep_noise([t], (1, 6, 6)))
        assert torch.equal(dc_zero_predict(errors), labels)
        # the oracle reconstructs prototype c exactly: the error is the distance to it
        expected = (z0[:, None] - prototypes[None]).square().flatten(2).mean(2)
        torch.testing.assert_close(errors[..., 0], expected, rtol=1e-3, atol=1e-4)


def test_t_sweep_gives_one_accuracy_per_t_and_picks_the_best():
    prototypes = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % 4
    z0 = prototypes[labels]
    right, wrong = oracle_eps_fn(prototypes), oracle_eps_fn(prototypes[[1, 2, 3, 0]])

    def eps_fn(x_t, t, c):  # exact at t = 300, off by one class elsewhere
        return torch.where((t == 300).view(-1, 1, 1, 1), right(x_t, t, c), wrong(x_t, t, c))

    grid = torch.tensor([100, 300, 500, 700])
    sweep = t_sweep(eps_fn, z0, labels, 4, ALPHAS_CUMPROD, grid, seed=3, images_per_batch=5)
    assert sweep.accuracy.shape == (4,) and sweep.errors.shape == (12, 4, 4)
    assert sweep.accuracy.tolist() == [0.0, 1.0, 0.0, 0.0] and sweep.best_t == 300
    assert sweep.scores()["accuracy"] == 1.0 and [r["t"] for r in sweep.rows()] == grid.tolist()
    # the sweep's accuracy at t is single-t DC Zero at t with the same (seed, t) noise
    single = dc_zero_errors(eps_fn, z0, 4, ALPHAS_CUMPROD, 500, timestep_noise([500], (1, 4, 4), seed=3))
    assert (dc_zero_predict(single) == labels).float().mean().item() == sweep.accuracy[2].item()
    assert sweep_timesteps().tolist() == list(range(50, 1000, 50))


def test_multi_t_aggregation():
    # 2 images, 3 classes, 3 timesteps; the last t has errors 1000x larger (high t)
    errors = torch.tensor(
        [
            [[1.0, 2.0, 3000.0], [2.0, 1.0, 1000.0], [3.0, 3.0, 2000.0]],
            [[1.0, 1.0, 1000.0], [2.0, 2.0, 1000.0], [0.5, 3.0, 1100.0]],
        ]
    )
    assert dc_zero_predict(errors, "mean").tolist() == [1, 0]  # dominated by the last t
    assert dc_zero_predict(errors, "vote").tolist() == [1, 0]  # image 0: votes 0, 1, 1
    assert dc_zero_predict(errors, "relative").tolist() == [1, 0]
    assert dc_zero_predict(errors[:, :, :1], "vote").tolist() == [0, 2]  # one t: plain argmin
    tie = torch.tensor([[[1.0, 5.0], [2.0, 1.0], [9.0, 9.0]]])  # one vote each for classes 0 and 1
    assert dc_zero_predict(tie, "vote").tolist() == [1]  # tie -> lower relative error (0.35 vs 0.625)
    with pytest.raises(Exception, match="aggregation"):
        dc_zero_predict(errors, "median")


def test_f1_scores_against_hand_computed_values():
    # binary: class 1 has TP 2, FP 2, FN 1 -> F1 4/7; class 0 has TP 3, FP 1, FN 2 -> 2/3
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    preds = torch.tensor([1, 1, 0, 1, 1, 0, 0, 0])
    s = classification_scores(preds, labels, 2)
    assert s["accuracy"] == pytest.approx(5 / 8)
    assert s["f1_binary"] == pytest.approx(4 / 7, abs=1e-6)
    assert s["f1_macro"] == pytest.approx((4 / 7 + 2 / 3) / 2, abs=1e-6)
    # 3 classes: F1 = 1/2, 4/5, 2/3
    s3 = classification_scores(torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    assert s3["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6) and "f1_binary" not in s3
    assert s3["accuracy"] == pytest.approx(4 / 6)


def test_more_noise_draws_extend_the_single_draw():
    one = timestep_noise([100, 700], (1, 4, 4), seed=3)
    three = timestep_noise([100, 700], (1, 4, 4), seed=3, draws=3)
    assert three.shape == (6, 1, 4, 4)
    assert torch.equal(three[0], one[0]) and torch.equal(three[3], one[1])  # draw 0 of each t is the single draw
    assert not torch.equal(three[0], three[1]) and not torch.equal(three[1], three[4])
    assert torch.equal(three, timestep_noise([100, 700], (1, 4, 4), seed=3, draws=3))  # a function of (seed, t, d)

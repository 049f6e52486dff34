"""Per-image early stopping: exact NFE against counted calls, the full budget's decision kept on clear cases,
the full budget spent on a tie, probabilities that sum to 1."""

from __future__ import annotations

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.generative.adaptive import Schedule, classify
from diffcls.generative.racing import classify_racing, pair_errors, racing_threshold
from oracle_diffusion import ALPHAS_CUMPROD, oracle_eps_fn


def counting(eps_fn):
    calls = {"rows": 0}

    def fn(x_t, t, labels):
        calls["rows"] += len(x_t)
        return eps_fn(x_t, t, labels)

    return fn, calls


def test_pair_errors_match_the_batched_scorer():
    from diffcls.generative.scoring import noise_prediction_errors

    torch.manual_seed(0)
    prototypes = torch.randn(4, 1, 3, 3)
    x0 = torch.randn(2, 1, 3, 3)
    t, noise = torch.tensor([5, 300, 900]), torch.randn(2, 3, 1, 3, 3)
    full = noise_prediction_errors(oracle_eps_fn(prototypes), x0, torch.arange(4).expand(2, -1), t, noise,
                                   ALPHAS_CUMPROD)  # fmt: skip
    images, classes = torch.tensor([0, 1, 1]), torch.tensor([3, 0, 2])
    torch.testing.assert_close(
        pair_errors(oracle_eps_fn(prototypes), x0, images, classes, t, noise, ALPHAS_CUMPROD, batch_size=4),
        full[images, classes],
    )


def test_clear_images_stop_early_with_the_full_budgets_decision_and_exact_nfe():
    torch.manual_seed(1)
    prototypes = torch.randn(5, 1, 4, 4)
    x0 = torch.cat([prototypes[[3, 0]] + 0.05 * torch.randn(2, 1, 4, 4),
                    0.5 * (prototypes[[1]] + prototypes[[2]])])  # fmt: skip  # image 2: halfway, an exact tie
    eps_fn, calls = counting(oracle_eps_fn(prototypes))
    noise = torch.randn(40, 1, 4, 4)
    race = classify_racing(eps_fn, x0, 5, ALPHAS_CUMPROD, 40, noise, chunk=4, alpha=0.05)
    assert calls["rows"] == int(race.nfe.sum())  # NFE counted exactly
    full = classify(oracle_eps_fn(prototypes), x0, 5, ALPHAS_CUMPROD, Schedule((40,), (1,)), noise)
    assert race.prediction[:2].tolist() == full.prediction[:2].tolist() == [3, 0]
    assert (race.nfe[:2] < 5 * 40).all()  # the clear images stopped early
    assert race.prediction[2].item() in (1, 2) and race.nfe[2] > race.nfe[:2].max()  # the tie kept racing longer
    torch.testing.assert_close(race.probabilities(100.0).sum(1), torch.ones(3))


def test_a_smaller_error_rate_needs_more_evidence():
    assert racing_threshold(0.001, 9, 10, 5) > racing_threshold(0.05, 9, 10, 5) > racing_threshold(0.05, 9, 10, 50)
    with pytest.raises(DiffclsError, match="error rate"):
        racing_threshold(1.5, 9, 10, 5)
    with pytest.raises(DiffclsError, match="chunk"):
        classify_racing(lambda x, t, c: x, torch.zeros(1, 1, 2, 2), 3, ALPHAS_CUMPROD, 10, torch.zeros(10, 1, 2, 2),
                        chunk=1)  # fmt: skip


def test_a_race_among_proposed_candidates_scores_only_them():
    """candidates (a proposer's top-P): nothing outside them is scored or predicted, the NFE is counted exactly,
    and the race on two candidates decides as the full budget does between the same two classes."""
    torch.manual_seed(2)
    prototypes = torch.randn(6, 1, 4, 4)
    x0 = prototypes[[4, 1, 2]] + 0.05 * torch.randn(3, 1, 4, 4)
    candidates = torch.tensor([[4, 0], [5, 1], [3, 0]])  # image 2's class is not proposed
    eps_fn, calls = counting(oracle_eps_fn(prototypes))
    noise = torch.randn(20, 1, 4, 4)
    race = classify_racing(eps_fn, x0, 6, ALPHAS_CUMPROD, 20, noise, chunk=4, alpha=0.05, candidates=candidates)
    assert calls["rows"] == int(race.nfe.sum()) and (race.nfe <= 2 * 20).all()
    scored = ~race.errors.isnan().all(-1)
    proposed = torch.zeros(3, 6, dtype=torch.bool).scatter(1, candidates, True)
    assert (scored == proposed).all()
    full = classify(oracle_eps_fn(prototypes), x0, 6, ALPHAS_CUMPROD, Schedule((20,), (1,)), noise,
                    candidates=candidates)  # fmt: skip
    assert race.prediction.tolist() == full.prediction.tolist()
    assert race.prediction[:2].tolist() == [4, 1] and race.prediction[2].item() in (3, 0)
    probs = race.probabilities(100.0)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    assert (probs[~proposed] == 0).all()
    with pytest.raises(DiffclsError, match="at least 2 classes"):
        classify_racing(eps_fn, x0, 6, ALPHAS_CUMPROD, 20, noise, chunk=4, candidates=candidates[:, :1])

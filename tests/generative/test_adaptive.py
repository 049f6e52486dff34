"""Successive elimination: nested grids, the paper's exact NFE, the winner, and stage-wise probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.generative.adaptive import SCHEDULES, Schedule, classify, nested_order, parse_schedule
from oracle_diffusion import ALPHAS_CUMPROD, oracle_eps_fn

# Network evaluations per image that the paper reports (Table 6), by schedule and number of classes. Pets is
# listed as 1,890 in the paper, a slip: 37 * 25 + 5 * 225 = 2,050.
PAPER_NFE = {
    "cifar10": (10, 2750),
    "stl10": (10, 3000),
    "pets": (37, 2050),
    "food101": (101, 5120),
    "aircraft": (100, 5100),
    "flowers102": (102, 5140),
    "objectnet": (113, 13400),
    "imagenet": (1000, 100000),
}


@pytest.mark.parametrize("name", sorted(PAPER_NFE))
def test_nfe_of_the_paper_schedules_is_exact(name):
    num_classes, paper = PAPER_NFE[name]
    schedule = SCHEDULES[name]
    assert schedule.nfe(num_classes) == paper
    rows = 0

    def counting_eps_fn(x_t, t, labels):
        nonlocal rows
        rows += len(x_t)
        return torch.zeros_like(x_t)

    result = classify(
        counting_eps_fn,
        torch.zeros(2, 1, 1, 1),
        num_classes,
        ALPHAS_CUMPROD,
        schedule,
        torch.randn(schedule.num_timesteps, 1, 1, 1),
        batch_size=4096,
    )
    assert rows == 2 * paper and result.nfe == paper
    scored = (~result.errors.isnan()).sum(-1)  # timesteps per class: n_s for a class eliminated after stage s
    counts = sorted(scored[0].tolist())
    alive = schedule.alive(num_classes) + [0]  # the last stage keeps its survivor, scored on n_S too
    for n, before, after in zip(schedule.n_samples, alive, alive[1:]):
        assert counts.count(n) == before - after
    assert scored[0, result.prediction[0]] == schedule.num_timesteps


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_grids_nest_and_each_stage_is_spread(name):
    schedule = SCHEDULES[name]
    order = nested_order(schedule)
    m = schedule.num_timesteps
    assert sorted(order.tolist()) == list(range(m))  # a permutation: every grid timestep, once
    n1 = schedule.n_samples[0]
    assert order[:n1].tolist() == list(range((m // n1) // 2, m, m // n1))[:n1]  # the reference's stage 1
    for n in schedule.n_samples:
        chosen = np.sort(order[:n])
        gaps = np.diff(np.concatenate([[-1], chosen, [m]]))
        assert gaps.max() <= 2 * m / n + 1, (n, gaps.max())
        # balanced: every stage's timesteps centred and spread as an even grid (the middle stages of the 4-stage
        # schedules once leant to low t: mean 416-434 of 999)
        assert abs(chosen.mean() - (m - 1) / 2) <= 0.01 * m, (n, chosen.mean())
        assert abs(chosen.std() / (m / 12**0.5) - 1) <= 0.05, (n, chosen.std())


def test_classify_finds_the_nearest_prototype_and_probabilities_are_stagewise():
    torch.manual_seed(0)
    prototypes = torch.randn(10, 1, 5, 5)
    labels = torch.tensor([3, 7, 0, 9])
    x0 = prototypes[labels] + 0.05 * torch.randn(4, 1, 5, 5)
    schedule = Schedule((4, 20), (3, 1))
    result = classify(oracle_eps_fn(prototypes), x0, 10, ALPHAS_CUMPROD, schedule, torch.randn(20, 1, 5, 5))
    assert result.prediction.tolist() == labels.tolist()
    probs = result.probabilities(temperature=50.0)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    assert probs.argmax(1).tolist() == labels.tolist()
    # Hand computation for image 0: stage 1 softmax over all 10 on the 4 shared timesteps, then the survivors'
    # share split by a softmax over the 3 survivors on the 20 timesteps.
    errs = result.errors[0].double()
    first = result.order[:4]
    p1 = torch.softmax(-50.0 * errs[:, first].mean(1), 0)
    survivors = (~errs[:, int(result.order[4])].isnan()).nonzero().flatten()
    p2 = torch.softmax(-50.0 * errs[survivors].mean(1), 0) * p1[survivors].sum()
    expected = p1.clone()
    expected[survivors] = p2
    torch.testing.assert_close(probs[0].double(), expected, rtol=1e-5, atol=1e-7)


def test_flat_schedule_probabilities_are_a_softmax_of_mean_errors():
    torch.manual_seed(1)
    prototypes = torch.randn(4, 1, 3, 3)
    x0 = prototypes[[1, 2]] + 0.3 * torch.randn(2, 1, 3, 3)
    result = classify(
        oracle_eps_fn(prototypes), x0, 4, ALPHAS_CUMPROD, parse_schedule(preset="flat-8"), torch.randn(2, 8, 1, 3, 3)
    )
    assert (~result.errors.isnan()).all() and result.nfe == 4 * 8
    torch.testing.assert_close(result.probabilities(3.0), torch.softmax(-3.0 * result.mean_errors(), 1))


def test_schedule_parsing_and_errors():
    assert parse_schedule("50,500", "5,1") == SCHEDULES["cifar10"]
    assert parse_schedule("100") == Schedule((100,), (1,))
    assert parse_schedule(preset="imagenet").nfe(1000) == 100000
    for bad in [("500,50", "5,1"), ("50,500", "1,5"), ("50,500", "5,2"), ("50", "5,1"), ("a,b", "1")]:
        with pytest.raises(DiffclsError):
            parse_schedule(*bad)
    with pytest.raises(DiffclsError, match="unknown schedule"):
        parse_schedule(preset="mnist")


def test_classify_with_proposed_candidates_scores_only_those():
    """The hybrid's elimination: each image starts from its own candidates; the network is called exactly
    schedule.nfe(P) times per image, classes outside are never scored, and the survivor is the nearest proposed
    prototype (here the true one is left out for image 1, so the runner-up among the proposed wins)."""
    torch.manual_seed(0)
    prototypes = torch.randn(6, 1, 4, 4)
    x0 = prototypes[[2, 5]] + 0.01 * torch.randn(2, 1, 4, 4)
    schedule = Schedule((2, 6), (2, 1))
    candidates = torch.tensor([[2, 0, 4], [1, 3, 0]])
    rows, seen = 0, set()
    oracle = oracle_eps_fn(prototypes)

    def counting(x_t, t, labels):
        nonlocal rows
        rows += len(x_t)
        seen.update(labels.tolist())
        return oracle(x_t, t, labels)

    result = classify(counting, x0, 6, ALPHAS_CUMPROD, schedule, torch.randn(6, 1, 4, 4), candidates=candidates)
    assert result.nfe == schedule.nfe(3) == 3 * 2 + 2 * 4 and rows == 2 * result.nfe
    assert seen <= {0, 1, 2, 3, 4} and 5 not in seen
    assert result.errors[0, [1, 3, 5]].isnan().all() and result.errors[1, [2, 4, 5]].isnan().all()
    assert result.prediction[0].item() == 2
    errors = [(x0[1] - prototypes[c]).square().mean().item() for c in (1, 3, 0)]
    assert result.prediction[1].item() == (1, 3, 0)[int(np.argmin(errors))]


def test_hybrid_probabilities_keep_the_proposer_mass_outside_and_sum_to_one():
    from diffcls.generative.adaptive import hybrid_probabilities

    proposer = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    candidates = torch.tensor([[0, 1], [2, 3]])
    dc = torch.tensor([[0.2, 0.8, 0.0, 0.0], [0.0, 0.0, 0.6, 0.4]])
    p = hybrid_probabilities(proposer, dc, candidates)
    torch.testing.assert_close(p.sum(1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(p[0], torch.tensor([0.16, 0.64, 0.15, 0.05], dtype=torch.float64))
    torch.testing.assert_close(p[1], torch.tensor([0.25, 0.25, 0.3, 0.2], dtype=torch.float64))
    assert p[0].argmax() == 1 and p[1].argmax() == 2  # the Diffusion Classifier's choice among the proposed

"""DiDiCM-CP's reference Euler step ends in exact ties; the tie-free variants and the tie-rate metric."""

import pytest
import torch

from diffcls.didicm import CP_UPDATES, SamplerConfig, UniformProcess, cp_sample
from diffcls.didicm.samplers import break_top_ties
from diffcls.inference.metrics import classification_metrics, tie_rate

K, N, STEPS = 10, 300, 8


def dirichlet_posteriors(n: int, k: int, alpha: float, seed: int) -> torch.Tensor:
    """(n, k) float64 rows drawn from Dirichlet(alpha), seeded."""
    g = torch._standard_gamma(
        torch.full((n, k), alpha, dtype=torch.float64), generator=torch.Generator().manual_seed(seed)
    )
    return g / g.sum(-1, keepdim=True)


def exact_score(p0: torch.Tensor):
    """The exact log concrete score log p_sigma(j) / p_sigma(c_t) of the uniform process started at p0 (N, K)."""
    process = UniformProcess(p0.shape[1])

    def score_fn(c_t, sigma):
        log_q = process.marginal(p0, sigma.double()).log()
        return (log_q - log_q.gather(1, c_t[:, None])).float()

    return score_fn


@pytest.fixture(scope="module")
def posterior():
    return dirichlet_posteriors(N, K, 0.3, seed=0)


@pytest.fixture(scope="module")
def outputs(posterior):
    """CP-8 probabilities (N, K) of every update, driven by the exact score of ``posterior``."""
    return {u: cp_sample(exact_score(posterior), N, K, STEPS, update=u) for u in CP_UPDATES}


def clear_agreement(probs: torch.Tensor, posterior: torch.Tensor, margin: float = 0.1) -> float:
    """Top-1 agreement with the posterior's argmax on rows where its top class leads by >= margin."""
    top2 = posterior.topk(2).values
    clear = top2[:, 0] - top2[:, 1] >= margin
    return (probs.argmax(-1) == posterior.argmax(-1))[clear].double().mean().item()


# ---------------------------------------------------------------------------------------------------- the metric


def test_tie_rate_hand_made():
    assert tie_rate(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])) == 0.0
    assert tie_rate(torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.5, 0.4]])) == 0.5  # exact tie in row 0
    assert tie_rate(torch.tensor([[0.2, 0.2, 0.6]])) == 0.0  # a tie below the top is not counted
    near = torch.tensor([[0.5, 0.5 - 1e-8, 0.0]], dtype=torch.float64)
    assert tie_rate(near) == 0.0 and tie_rate(near, rtol=1e-6) == 1.0  # not exact; within rtol 1e-6
    assert tie_rate(torch.tensor([[0.5, 0.4999, 0.0001]])) == 0.0  # 2e-4 apart: outside rtol
    assert tie_rate(torch.tensor([[0.5, 0.4999, 0.0001]]), rtol=1e-3) == 1.0
    assert tie_rate(torch.ones(3, 1)) == 0.0 and tie_rate(torch.zeros(0, 4)) == 0.0


def test_classification_metrics_reports_tie_rate():
    m = classification_metrics(torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.5, 0.4]]), torch.tensor([1, 1]))
    assert m["tie_rate"] == 0.5 and m["top1"] == 0.5  # row 0's argmax is class 0, by index


def test_break_top_ties_orders_by_previous_p():
    p = torch.tensor([[0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1]])
    prev = torch.tensor([[0.3, 0.5, 0.2], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]], dtype=torch.float64)
    out = break_top_ties(p, prev)
    assert out.argmax(-1).tolist() == [1, 2, 0]  # the previous leader of the tied classes; row 2 had no tie
    assert out[1].argsort(descending=True).tolist() == [2, 1, 0]  # a full order among the tied classes
    assert tie_rate(out, rtol=0.0) == 0.0 and torch.equal(out[2], p[2])
    assert (out - p).abs().max() < 1.2e-7 and out.max(-1).values.tolist() == p.max(-1).values.tolist()


# ------------------------------------------------------------------------------------- the sampler, exact score


def test_reference_euler_ties_and_the_variants_do_not(outputs):
    # Measured over seeds 0-3 (N = 300): euler ties on 0.30-0.41 of rows; the other updates on none.
    assert tie_rate(outputs["euler"], rtol=0.0) > 0.15
    assert tie_rate(outputs["euler-lower"]) == 0.0 and tie_rate(outputs["analytic"]) == 0.0
    # tie-break orders the tied classes but keeps their values (< 1.2e-7 apart): no exact ties, near ties remain
    assert tie_rate(outputs["euler-tiebreak"], rtol=0.0) == 0.0
    assert tie_rate(outputs["euler-tiebreak"], rtol=1e-6) == tie_rate(outputs["euler"])


def test_tie_free_variants_agree_with_the_posterior(outputs, posterior):
    # Measured (seeds 0-3): agreement 1.0 for both variants, 0.77-0.80 for euler.
    reference = clear_agreement(outputs["euler"], posterior)
    for update in ("euler-lower", "euler-tiebreak"):
        agreement = clear_agreement(outputs[update], posterior)
        assert agreement >= 0.95 and agreement > reference, (update, agreement, reference)


def test_tiebreak_only_reorders_ties(outputs):
    torch.testing.assert_close(outputs["euler-tiebreak"], outputs["euler"], rtol=0.0, atol=1.2e-7)
    top2 = outputs["euler"].topk(2).values
    untied = top2[:, 0] > top2[:, 1]
    assert torch.equal(outputs["euler-tiebreak"][untied], outputs["euler"][untied])


def test_lower_clamp_is_a_distribution(outputs):
    p = outputs["euler-lower"]
    assert (p >= 0).all() and torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(N))


def test_unknown_update_lists_the_choices():
    with pytest.raises(ValueError, match="euler-tiebreak"):
        cp_sample(exact_score(torch.full((1, K), 1 / K, dtype=torch.float64)), 1, K, 2, update="upper")


# ------------------------------------------------------------------------------------------------ the config


@pytest.mark.parametrize(
    "update,label,key,group",
    [
        ("euler", "CP-8", "cp-euler-8", "CP euler"),
        ("analytic", "CP-8 analytic", "cp-analytic-8", "CP analytic"),
        ("euler-lower", "CP-8 lower-clamp", "cp-euler-lower-8", "CP lower-clamp"),
        ("euler-tiebreak", "CP-8 tie-break", "cp-euler-tiebreak-8", "CP tie-break"),
    ],
)
def test_config_names_and_round_trip(update, label, key, group):
    cfg = SamplerConfig("cp", steps=8, cp_update=update)
    assert (cfg.label, cfg.key, cfg.spec.plot_group(cfg)) == (label, key, group)
    assert cfg.spec.kwargs(cfg)["update"] == update
    assert SamplerConfig.from_fields(cfg.fields()) == cfg


def test_sweep_keeps_reference_and_analytic_only():
    updates = {c.cp_update for c in SamplerConfig().spec.sweep((4, 8), ())}
    assert updates == {"euler", "analytic"}


def test_the_library_reads_out_with_euler_lower_and_the_reference_is_one_option_away():
    import inspect

    assert SamplerConfig().cp_update == "euler-lower" and SamplerConfig().label == "CP-8 lower-clamp"
    assert SamplerConfig(cp_update="euler").label == "CP-8"  # the reference readout
    assert inspect.signature(cp_sample).parameters["update"].default == "euler"  # the paper's function

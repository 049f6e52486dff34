import math

import pytest
import torch

from diffcls.didicm import LogLinearNoise, UniformProcess, denoising_score_entropy, didicm_loss, soft_score_entropy

K = 7
SIGMA_1 = -math.log(1e-3)


def generic_dse(s, c_t, c_0, sigma):
    """l = (1/K) sum_{j != c_t} [e^s_j - r_j s_j + r_j(log r_j - 1)], r from q = exp(sigma Q) e_{c_0}."""
    q_mat = torch.full((K, K), 1.0 / K, dtype=torch.float64) - torch.eye(K, dtype=torch.float64)
    out = []
    for b in range(len(c_t)):
        q = torch.linalg.matrix_exp(sigma[b] * q_mat)[:, c_0[b]]
        r = q / q[c_t[b]]
        terms = s[b].exp() - r * s[b] + r * (r.log() - 1)
        out.append(terms.sum() - terms[c_t[b]])
    return torch.stack(out) / K


def random_case(n, seed, sigmas=None):
    g = torch.Generator().manual_seed(seed)
    c_0 = torch.randint(K, (n,), generator=g)
    c_t = torch.where(torch.rand(n, generator=g) < 0.4, c_0, torch.randint(K, (n,), generator=g))
    if sigmas is None:
        sigmas = 10 ** torch.empty(n, dtype=torch.float64).uniform_(-8, math.log10(7), generator=g)
    s = 2 * torch.randn(n, K, dtype=torch.float64, generator=g)
    return s, c_t, c_0, sigmas


def test_closed_form_equals_generic_formula():
    s, c_t, c_0, sigma = random_case(400, 0)
    assert (c_t == c_0).any() and (c_t != c_0).any()
    torch.testing.assert_close(
        denoising_score_entropy(s, c_t, c_0, sigma), generic_dse(s, c_t, c_0, sigma), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_sigma(dtype):
    s, c_t, c_0, _ = random_case(64, 1)
    for sigma in (1e-8, SIGMA_1):
        loss = denoising_score_entropy(s.to(dtype), c_t, c_0, torch.full((64,), sigma, dtype=dtype))
        assert loss.dtype == dtype and torch.isfinite(loss).all()


def test_minimiser_is_true_log_ratio():
    _, c_t, c_0, sigma = random_case(50, 2, sigmas=torch.logspace(-5, math.log10(SIGMA_1), 50, dtype=torch.float64))
    q = UniformProcess(K).marginal(c_0, sigma)
    s = (q.log() - q.gather(1, c_t[:, None]).log()).requires_grad_(True)
    loss = denoising_score_entropy(s, c_t, c_0, sigma)
    loss.sum().backward()
    torch.testing.assert_close(s.grad, torch.zeros_like(s), atol=1e-9, rtol=0)
    torch.testing.assert_close(loss, torch.zeros_like(loss), atol=1e-6, rtol=0)
    # ... and any perturbation increases it
    s2 = s.detach() + 0.1 * torch.randn(s.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.all(denoising_score_entropy(s2, c_t, c_0, sigma) > loss.detach())


def test_reference_column_is_ignored():
    s, c_t, c_0, sigma = random_case(32, 3)
    s2 = s.clone()
    s2[torch.arange(32), c_t] = 123.0
    torch.testing.assert_close(
        denoising_score_entropy(s2, c_t, c_0, sigma), denoising_score_entropy(s, c_t, c_0, sigma)
    )
    p_t = UniformProcess(K).marginal(c_0, sigma)
    torch.testing.assert_close(soft_score_entropy(s2, c_t, p_t), soft_score_entropy(s, c_t, p_t))


def test_soft_with_one_hot_target_equals_closed_form():
    # sigma >= 1e-3 keeps all ratios inside the soft loss's [1e-10, 1e10] clamp.
    s, c_t, c_0, _ = random_case(300, 4)
    sigma = torch.logspace(-3, math.log10(SIGMA_1), 300, dtype=torch.float64)
    p_t = UniformProcess(K).marginal(torch.eye(K, dtype=torch.float64)[c_0], sigma)
    torch.testing.assert_close(
        soft_score_entropy(s, c_t, p_t), denoising_score_entropy(s, c_t, c_0, sigma), rtol=1e-9, atol=1e-9
    )


def constant_score_fn(batch, seed=0):
    logits = torch.randn(batch, K, generator=torch.Generator().manual_seed(seed))
    return lambda c_t, sigma: logits[: len(c_t)] * (1 + sigma[:, None])


def test_didicm_loss_hard_and_soft_paths():
    noise, n = LogLinearNoise(), 16
    labels = torch.randint(K, (n,), generator=torch.Generator().manual_seed(0))
    w = torch.zeros(K, requires_grad=True)

    def score_fn(c_t, sigma):
        return constant_score_fn(n)(c_t, sigma) + w

    for target in (labels, torch.softmax(torch.randn(n, K), -1)):
        loss = didicm_loss(score_fn, target, K, noise, generator=torch.Generator().manual_seed(5))
        again = didicm_loss(score_fn, target, K, noise, generator=torch.Generator().manual_seed(5))
        assert loss.shape == () and torch.isfinite(loss) and loss.item() == again.item()
        (grad,) = torch.autograd.grad(loss, w)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    one = didicm_loss(score_fn, labels[:1], K, noise)  # batch size 1
    assert torch.isfinite(one)


def test_soft_one_hot_matches_hard_in_expectation():
    # Same estimator in expectation: sigma'(t) * l averaged over t and c_t.
    noise, n = LogLinearNoise(), 200_000
    labels = torch.randint(K, (n,), generator=torch.Generator().manual_seed(1))
    logits = torch.randn(K, generator=torch.Generator().manual_seed(2))

    def score_fn(c_t, sigma):
        return logits.expand(len(c_t), K) * sigma.clamp_max(1)[:, None]

    hard = didicm_loss(score_fn, labels, K, noise, sampling_eps=0.01, generator=torch.Generator().manual_seed(3))
    soft = didicm_loss(
        score_fn, torch.eye(K)[labels], K, noise, sampling_eps=0.01, generator=torch.Generator().manual_seed(4)
    )
    assert soft.item() == pytest.approx(hard.item(), rel=0.03)


@pytest.mark.parametrize("soft", [False, True])
def test_didicm_loss_is_rate_weighted_mean(soft):
    # Recompute the objective from the (c_t, sigma) the network was called with;
    # for the log-linear schedule sigma'(t) = 0.999 e^{sigma}.
    n, calls = 64, []
    labels = torch.randint(K, (n,), generator=torch.Generator().manual_seed(6))
    target = torch.eye(K)[labels] if soft else labels
    base = constant_score_fn(n)

    def score_fn(c_t, sigma):
        calls.append((c_t, sigma, base(c_t, sigma)))
        return calls[-1][2]

    loss = didicm_loss(score_fn, target, K, LogLinearNoise(), generator=torch.Generator().manual_seed(7))
    c_t, sigma, out = calls[0]
    want = (0.999 * sigma.exp() * denoising_score_entropy(out, c_t, labels, sigma)).mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=0)

import math

import pytest
import torch

from diffcls.didicm import UniformProcess

K = 6
SIGMAS = torch.logspace(-8, math.log10(-math.log(1e-3)), 9, dtype=torch.float64)


def expm_marginal(p0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    q = torch.full((K, K), 1.0 / K, dtype=torch.float64) - torch.eye(K, dtype=torch.float64)
    return torch.stack([torch.linalg.matrix_exp(s * q) @ p for s, p in zip(sigma, p0)])


def test_rate_matrix():
    q = UniformProcess(K).rate_matrix()
    torch.testing.assert_close(q.sum(0), torch.zeros(K, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(q)
    torch.testing.assert_close(eig, torch.tensor([-1.0] * (K - 1) + [0.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_marginal_hard_matches_matrix_exp():
    labels = torch.arange(len(SIGMAS)) % K
    got = UniformProcess(K).marginal(labels, SIGMAS)
    want = expm_marginal(torch.eye(K, dtype=torch.float64)[labels], SIGMAS)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)


def test_marginal_soft_matches_matrix_exp():
    p0 = torch.softmax(torch.randn(len(SIGMAS), K, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), -1)
    got = UniformProcess(K).marginal(p0, SIGMAS)
    torch.testing.assert_close(got, expm_marginal(p0, SIGMAS), rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(got.sum(-1), torch.ones(len(SIGMAS), dtype=torch.float64))


def test_marginal_tiny_sigma_float32():
    q = UniformProcess(K).marginal(torch.tensor([2]), torch.tensor([1e-8]))
    assert q.dtype == torch.float32
    # off-diagonal mass ~ sigma/K must not round to zero (expm1, not 1 - exp)
    torch.testing.assert_close(q[0, 0], torch.tensor(1e-8 / K), rtol=1e-4, atol=0)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 4.0])
def test_sample_transition_frequencies(sigma):
    proc, n = UniformProcess(K), 200_000
    c0 = torch.full((n,), 2)
    ct = proc.sample_transition(c0, torch.full((n,), sigma), torch.Generator().manual_seed(1))
    freq = torch.bincount(ct, minlength=K).double() / n
    want = proc.transition_prob(torch.arange(K), torch.full((K,), 2), torch.tensor(sigma, dtype=torch.float64))
    tol = 5 * torch.sqrt(want * (1 - want) / n)
    assert torch.all((freq - want).abs() < tol), (freq, want)


def test_sample_transition_is_deterministic_with_generator():
    proc, c0 = UniformProcess(K), torch.arange(100) % K
    a = proc.sample_transition(c0, torch.tensor(1.0), torch.Generator().manual_seed(3))
    b = proc.sample_transition(c0, torch.tensor(1.0), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, c0)


def test_denoise_and_reverse_marginal():
    proc = UniformProcess(K)
    p0 = torch.softmax(3 * torch.randn(4, K, dtype=torch.float64, generator=torch.Generator().manual_seed(2)), -1)
    sigma, sigma_next = torch.tensor([0.3, 1.0, 3.0, 6.9], dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    pi = proc.marginal(p0, sigma)
    torch.testing.assert_close(proc.denoise(pi, sigma), p0)
    torch.testing.assert_close(proc.reverse_marginal(pi, sigma, 0.0), p0)
    # exact reverse step = exp(-(sigma - sigma') Q) applied to pi
    q = proc.rate_matrix()
    want = torch.stack([torch.linalg.matrix_exp(-(s - sigma_next) * q) @ p for s, p in zip(sigma, pi)])
    torch.testing.assert_close(proc.reverse_marginal(pi, sigma, sigma_next), want)


def test_reverse_rate_matvec_equals_explicit_matrix():
    g = torch.Generator().manual_seed(4)
    proc, h = UniformProcess(K), 0.37
    p = torch.softmax(torch.randn(8, K, dtype=torch.float64, generator=g), -1)
    pi = torch.softmax(2 * torch.randn(8, K, dtype=torch.float64, generator=g), -1)
    q = proc.rate_matrix()
    for b in range(8):
        r = (pi[b][:, None] / pi[b][None, :]) * q.T  # R[i, j] = pi_i / pi_j * Q[j, i]
        r.fill_diagonal_(0.0)
        r -= torch.diag(r.sum(0))  # columns sum to zero
        want = (torch.eye(K, dtype=torch.float64) + h * r) @ p[b]
        torch.testing.assert_close(p[b] + h * proc.reverse_rate_matvec(p[b : b + 1], pi[b : b + 1])[0], want)

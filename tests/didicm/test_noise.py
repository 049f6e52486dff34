import math

import pytest
import torch

from diffcls.didicm import GeometricNoise, LogLinearNoise, get_noise

T = torch.linspace(0.0, 0.999, 101, dtype=torch.float64)


@pytest.mark.parametrize("noise", [LogLinearNoise(), GeometricNoise(), GeometricNoise(1e-2, 5.0)])
def test_rate_matches_finite_difference(noise):
    h = 1e-6
    t = T.clamp(h, 1 - h)
    fd = (noise.total_noise(t + h) - noise.total_noise(t - h)) / (2 * h)
    torch.testing.assert_close(noise.rate_noise(t), fd, rtol=1e-6, atol=0)


def test_loglinear_keep_probability_is_linear():
    sigma, _ = LogLinearNoise()(T)
    torch.testing.assert_close(torch.exp(-sigma), 1 - 0.999 * T, rtol=1e-12, atol=1e-15)
    sigma1, dsigma1 = LogLinearNoise()(torch.tensor(1.0, dtype=torch.float64))
    assert sigma1.item() == pytest.approx(-math.log(1e-3))
    assert dsigma1.item() == pytest.approx(999.0)


def test_loglinear_small_t_is_accurate_in_float32():
    t = torch.tensor([1e-8, 1e-5], dtype=torch.float32)
    sigma, dsigma = LogLinearNoise()(t)
    torch.testing.assert_close(sigma, 0.999 * t, rtol=1e-5, atol=0)
    assert torch.all(dsigma > 0.99)


def test_geometric_endpoints():
    noise = GeometricNoise(1e-3, 1.0)
    sigma, _ = noise(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(sigma, torch.tensor([1e-3, 1.0], dtype=torch.float64))


def test_factory():
    assert isinstance(get_noise("loglinear"), LogLinearNoise)
    geo = get_noise("geometric", sigma_min=1e-2, sigma_max=2.0)
    assert isinstance(geo, GeometricNoise) and geo.sigma_max == 2.0
    sigma, dsigma = get_noise()(0.5)  # plain float accepted
    assert sigma.shape == dsigma.shape == ()
    with pytest.raises(ValueError):
        get_noise("cosine")

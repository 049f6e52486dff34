"""``gaussmix``: the generator, its exact posterior against an independent computation and against the samples it
draws, the spec's options and errors, and the Bayes metrics an evaluation reports on it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffcls.cli import main
from diffcls.data import GaussMix, load_source
from diffcls.data.gaussmix import OPTIONS, parse_options
from diffcls.errors import DiffclsError
from diffcls.inference.metrics import expected_calibration_error, posterior_metrics


def scipy_log_likelihood(mix: GaussMix, images: np.ndarray) -> np.ndarray:
    """log P(x | c) pixel by pixel with scipy: bins [v − ½, v + ½], open at 0 and 255, upper tail by logsf."""
    x = images.reshape(len(images), -1).astype(float)
    out = np.zeros((len(images), mix.num_classes))
    for c, mean in enumerate(mix.means.reshape(mix.num_classes, -1)):
        for i, row in enumerate(x):
            total = 0.0
            for v, mu in zip(row, mean):
                a = -np.inf if v <= 0 else (v - 0.5 - mu) / mix.sigma
                b = np.inf if v >= 255 else (v + 0.5 - mu) / mix.sigma
                if a > 0:  # upper tail: sf(a) − sf(b), in logs
                    total += norm.logsf(a) + np.log1p(-np.exp(norm.logsf(b) - norm.logsf(a)))
                else:
                    total += norm.logcdf(b) + np.log1p(-np.exp(norm.logcdf(a) - norm.logcdf(b)))
            out[i, c] = total
    return out


def test_likelihood_matches_scipy_bin_by_bin_including_clipped_and_far_tail_pixels():
    mix = GaussMix.make(classes=3, noise=0.05, size=4, seed=3)  # σ = 3.2 gray levels: far tails everywhere
    rng = np.random.default_rng(0)
    images = mix.sample(4, rng).images
    images[0, 0, 0, 0], images[1, 1, 1, 0], images[2, 2, 2, 0] = 0, 255, 200  # clipped and far from every mean
    ours = mix.log_likelihood(images)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, scipy_log_likelihood(mix, images), rtol=1e-9, atol=1e-6)


def test_the_posterior_is_calibrated_on_the_generators_own_samples():
    """If p(c | x) is exact, the labels the generator drew are distributed as it says: its calibration error is
    sampling noise, its mean NLL matches its mean entropy, and a model of the wrong noise level is worse."""
    source = load_source("gaussmix:test=20000,train=10,seed=1")
    q = torch.as_tensor(source.posterior(source.test.images))
    labels = torch.as_tensor(source.test.labels)
    assert torch.allclose(q.sum(1), torch.ones(len(q), dtype=torch.float64))
    assert expected_calibration_error(q, labels) < 0.012
    nll = -q.gather(1, labels[:, None]).log().mean().item()
    entropy = -(q * q.clamp_min(1e-300).log()).sum(1).mean().item()
    assert abs(nll - entropy) < 0.02
    bayes = posterior_metrics(q, labels, q)
    assert bayes["kl_to_bayes"] == pytest.approx(0.0, abs=1e-12) and 0.7 < bayes["bayes_top1"] < 0.85
    wrong_noise = GaussMix(means=GaussMix.make(10, 0.8, 16, 1).means, sigma=0.6 * 64)
    sharper = torch.as_tensor(wrong_noise.posterior(source.test.images))
    assert -sharper.gather(1, labels[:, None]).log().mean().item() > nll + 0.05
    assert posterior_metrics(sharper, labels, q)["kl_to_bayes"] > 0.05


def test_spec_options_and_the_data_set_they_make():
    source = load_source("gaussmix:classes=4,size=8,train=103,test=20,seed=5")
    assert source.num_classes == 4 and source.channels == 1 and source.native_size == (8, 8)
    assert source.train.images.shape == (103, 8, 8, 1) and source.train.images.dtype == np.uint8
    assert np.bincount(source.train.labels).tolist() == [26, 26, 26, 25]
    again = load_source("gaussmix:seed=5,test=20,train=103,size=8,classes=4")
    assert np.array_equal(again.train.images, source.train.images)  # options in any order, same draw
    assert not np.array_equal(
        load_source("gaussmix:classes=4,size=8,train=103,test=20,seed=6").train.images, source.train.images
    )
    assert parse_options("") == {name: spec[1] for name, spec in OPTIONS.items()}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gaussmix:colour=1", "unknown gaussmix option 'colour'; options: classes, noise, size, train, test, seed"),
        ("gaussmix:classes=1", "gaussmix option classes must lie in 2..100, got 1"),
        ("gaussmix:noise=-0.5", "gaussmix option noise must lie in 0.05..4.0, got -0.5"),
        ("gaussmix:size=big", "gaussmix option size takes a int, got 'big'"),
    ],
)
def test_bad_options_are_one_line_errors(spec, message):
    with pytest.raises(DiffclsError) as info:
        load_source(spec)
    assert str(info.value) == message


def test_an_evaluation_on_gaussmix_reports_the_bayes_metrics(tmp_path, capsys):
    """bayes_top1 / bayes_nll / kl_to_bayes in the results, equal to numpy on --save-probs and the posterior;
    none under a corruption (the posterior of corrupted images is unknown)."""
    data = "gaussmix:classes=4,size=8,train=400,test=60,noise=0.6"
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                data,
                "--method",
                "standard",
                "--model",
                "didirn_small",
                "--img-size",
                "8",
                "--epochs",
                "2",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    results, probs_file = tmp_path / "r.json", tmp_path / "p.npy"
    evaluation = ["eval", "--checkpoint", str(run), "--data", data, "--results-file", str(results)]
    assert main([*evaluation, "--save-probs", str(probs_file), "--calibrate"]) == 0
    r = json.loads(results.read_text())
    source = load_source(data)
    q, labels, p = source.posterior(source.test.images), source.test.labels, np.load(probs_file).astype(float)
    assert r["bayes_top1"] == pytest.approx((q.argmax(1) == labels).mean())
    assert r["bayes_nll"] == pytest.approx(-np.log(q[np.arange(len(q)), labels]).mean(), rel=1e-9)
    kl = (q * (np.log(q) - np.log(np.maximum(p, 1e-12)))).sum(1).mean()
    assert r["kl_to_bayes"] == pytest.approx(kl, rel=1e-4) and r["kl_to_bayes"] > 0
    assert "post_kl_to_bayes" in r and math.isfinite(r["post_kl_to_bayes"])
    capsys.readouterr()
    assert main([*evaluation, "--corruption", "contrast", "--severity", "2"]) == 0
    assert "kl_to_bayes" not in json.loads(results.read_text())

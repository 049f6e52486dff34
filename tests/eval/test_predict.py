"""Prediction: the samplers driven through ``bind_image``, which computes a DiDiRN's image prefix once."""

from __future__ import annotations

import pytest
import timm
import torch

import diffcls.models  # noqa: F401  (registers the DiDiRN family)
from diffcls.didicm import SamplerConfig, cl_sample, cp_sample
from diffcls.inference.predict import bind_image, sample_proba


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=10).eval()


def _count_stem_calls(net: torch.nn.Module) -> list[int]:
    calls = [0]
    net.conv1.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("name, prefix_runs", [("didirn_small", 8), ("didirn_small_late1", 1)])
def test_cp_with_the_cached_prefix_equals_full_forwards_per_step(name, prefix_runs):
    net, images = _net(name), torch.randn(6, 3, 32, 32)
    stem_calls = _count_stem_calls(net)
    cached = sample_proba(net, images, SamplerConfig("cp", steps=8))
    # The late variant's prefix runs once for 8 steps; the paper's DiDiRN (stem only) reruns it: faster.
    assert stem_calls[0] == prefix_runs
    with torch.inference_mode():
        full = cp_sample(lambda c, s: net(images, c, s), len(images), 10, 8, update=SamplerConfig().cp_update)
    assert stem_calls[0] == prefix_runs + 8
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-6)


def test_cl_chains_repeat_the_prefix_in_the_chain_layout():
    net, images = _net("didirn_small_late2"), torch.randn(10, 3, 32, 32)
    stem_calls = _count_stem_calls(net)
    cached = sample_proba(
        net, images, SamplerConfig("cl", steps=3, chains=5), generator=torch.Generator().manual_seed(1)
    )
    assert stem_calls[0] == 5  # sample_proba splits CL into len(images) // chains = 2 images per call
    generator = torch.Generator().manual_seed(1)
    parts = []
    with torch.inference_mode():  # the same split, each part's images repeated in the chain layout
        for part in images.split(2):
            rows = part.repeat_interleave(5, dim=0)
            parts.append(cl_sample(lambda c, s, x=rows: net(x, c, s), 2, 10, 3, chains=5, generator=generator))
    torch.testing.assert_close(cached, torch.cat(parts), rtol=0, atol=0)


def test_the_repeated_prefix_gives_the_scores_of_repeated_images():
    net, images = _net("didirn_small_late1"), torch.randn(3, 3, 32, 32)
    c, sigma = torch.arange(15) % 10, torch.linspace(0.1, 5.0, 15)
    with torch.inference_mode():
        scores = bind_image(net, images)(c, sigma)
        reference = net(images.repeat_interleave(5, dim=0), c, sigma)
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores, net(images.repeat(5, 1, 1, 1), c, sigma), atol=1e-3)  # layout matters


def test_training_mode_runs_the_whole_network_every_step():
    net, images = _net("didirn_small_late1"), torch.randn(4, 3, 32, 32)
    net.train()  # BatchNorm running statistics must update once per step, as in a plain forward
    stem_calls = _count_stem_calls(net)
    sample_proba(net, images, SamplerConfig("cp", steps=3))
    assert stem_calls[0] == 3

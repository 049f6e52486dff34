"""Tests for diffcls.models.didirn: geometry, parameter counts, twin equivalence, timm registry."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import diffcls.models  # noqa: F401  (registers the entrypoints with timm)
from diffcls.models import CONDITIONING_MODULES, DiDiRN, count_parameters
from diffcls.models.didirn import norm_groups_for

# Exact counts at K=1000 (conditional); the spec's table rounds them to 0.01M
# (12.11 / 22.46 / 27.70 / 48.98 / 66.63 M; 27,705,384 is 27.705M, printed as 27.70 there).
EXACT_PARAMS = {
    "didirn18": 12_110_760,
    "didirn34": 22_462_056,
    "didirn50": 27_705_384,
    "didirn101": 48_977_960,
    "didirn152": 66_633_768,
}
SPEC_PARAMS_M = {"didirn18": 12.11, "didirn34": 22.46, "didirn50": 27.70, "didirn101": 48.98, "didirn152": 66.63}
BLOCK_OUT_WIDTHS = {  # output width of every block, per model
    "didirn18": [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2,
    "didirn50": [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3,
}


def _is_cond(name: str) -> bool:
    return any(part in CONDITIONING_MODULES for part in name.split("."))


def _inputs(batch: int, size: int = 32, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    c_t = torch.randint(0, k, (batch,), generator=g)
    sigma = torch.rand(batch, generator=g) * 6.9
    return x, c_t, sigma


@pytest.mark.parametrize("name", list(EXACT_PARAMS))
def test_param_counts_match_spec(name: str) -> None:
    model = timm.create_model(name, num_classes=1000, device="meta")
    n = count_parameters(model)
    assert n == EXACT_PARAMS[name]
    assert abs(n / 1e6 - SPEC_PARAMS_M[name]) < 0.01


@pytest.mark.parametrize("name", ["didirn18", "didirn50"])
def test_twin_is_didirn_minus_exactly_the_conditioning(name: str) -> None:
    k, cond = 1000, 128
    full = timm.create_model(name, num_classes=k, device="meta")
    twin = timm.create_model(name, num_classes=k, conditional=False, device="meta")
    full_shapes = {n: p.shape for n, p in full.named_parameters()}
    twin_shapes = {n: p.shape for n, p in twin.named_parameters()}
    assert twin_shapes == {n: s for n, s in full_shapes.items() if not _is_cond(n)}
    # conditioning = label embedding + sigma-MLP (256->128->128) + one Linear(128->C) per block
    expected = k * cond + (256 * cond + cond + cond * cond + cond) + sum((cond + 1) * c for c in BLOCK_OUT_WIDTHS[name])
    assert sum(p.numel() for _, p in full.conditioning_parameters()) == expected
    assert count_parameters(full) - count_parameters(twin) == expected
    gn = [m for m in twin.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gn) == len(BLOCK_OUT_WIDTHS[name]) and all(m.num_groups == 32 for m in gn)
    assert sum(isinstance(m, nn.SiLU) for m in twin.modules()) == len(BLOCK_OUT_WIDTHS[name])


def test_resnet_small_is_plain_resnet_with_small_widths() -> None:
    plain = timm.create_model("resnet_small", num_classes=10)
    twin = timm.create_model("didirn_small", num_classes=10, conditional=False)
    assert not any(isinstance(m, (nn.GroupNorm, nn.SiLU)) for m in plain.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in twin.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in plain.modules())
    twin_convs = {n: p.shape for n, p in twin.named_parameters() if "out_norm" not in n}
    assert {n: p.shape for n, p in plain.named_parameters()} == twin_convs
    assert plain(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_norm_groups_avoid_single_channel_groups() -> None:
    assert [norm_groups_for(c) for c in (16, 32, 64, 128, 256, 2048, 48, 96)] == [8, 16, 32, 32, 32, 32, 24, 32]
    small = timm.create_model("didirn_small", num_classes=10)
    for m in small.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels // m.num_groups >= 2


@pytest.mark.parametrize("batch", [1, 4])
def test_didirn_small_output_shapes(batch: int) -> None:
    registered = set(timm.list_models("didirn*") + timm.list_models("resnet_small"))
    late = {f"{base}_late{n}" for base in ("didirn_small", "didirn18", "didirn50") for n in (1, 2)}
    assert (
        registered
        == {"didirn18", "didirn34", "didirn50", "didirn101", "didirn152", "didirn_small", "resnet_small"} | late
    )
    x, c_t, sigma = _inputs(batch)
    model = timm.create_model("didirn_small", num_classes=10).eval()
    twin = timm.create_model("didirn_small", num_classes=10, conditional=False).eval()
    assert model.conditional and not twin.conditional and model.num_classes == twin.num_classes == 10
    with torch.no_grad():
        assert model(x, c_t, sigma).shape == (batch, 10)
        assert twin(x).shape == (batch, 10)
        assert model.forward_features(x, c_t, sigma).shape == (batch, model.num_features, 4, 4)
        assert model.forward_head(twin.forward_features(x), pre_logits=True).shape == (batch, 128)
        assert model(x, c_t, 1.5).shape == (batch, 10)  # scalar sigma broadcasts


def test_didirn18_shape_at_64px() -> None:
    model = timm.create_model("didirn18", num_classes=7, in_chans=1).eval()
    x, c_t, sigma = _inputs(2, size=64, k=7)
    with torch.no_grad():
        assert model.forward_features(x[:, :1], c_t, sigma).shape == (2, 512, 4, 4)  # H/2 stem, then /8
        assert model(x[:, :1], c_t, sigma).shape == (2, 7)


def test_conditioning_changes_the_output() -> None:
    torch.manual_seed(0)
    model = timm.create_model("didirn_small", num_classes=10).eval()
    x, c_t, sigma = _inputs(4)
    with torch.no_grad():
        ref = model(x, c_t, sigma)
        assert torch.equal(ref, model(x, c_t, sigma))
        assert not torch.allclose(ref, model(x, (c_t + 1) % 10, sigma), atol=1e-4)
        assert not torch.allclose(ref, model(x, c_t, sigma + 1.0), atol=1e-4)


@pytest.mark.parametrize("train_mode", [False, True])
def test_twin_equals_didirn_with_zeroed_block_conditioning(train_mode: bool) -> None:
    torch.manual_seed(0)
    twin = timm.create_model("didirn_small", num_classes=10, conditional=False)
    full = timm.create_model("didirn_small", num_classes=10)
    missing, unexpected = full.load_state_dict(twin.state_dict(), strict=False)
    assert not unexpected
    assert set(missing) == {n for n in full.state_dict() if _is_cond(n)}
    x, c_t, sigma = _inputs(4)
    full.train(train_mode), twin.train(train_mode)
    with torch.no_grad():
        assert not torch.allclose(full(x, c_t, sigma), twin(x), atol=1e-4)  # conditioning active
        for name, p in full.named_parameters():
            if "cond_proj" in name:
                p.zero_()
        torch.testing.assert_close(full(x, c_t, sigma), twin(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(full(x, (c_t + 3) % 10, sigma * 0.1), twin(x), rtol=1e-5, atol=1e-5)


def test_bf16_forward_keeps_dtype() -> None:
    model = timm.create_model("didirn_small", num_classes=10, dtype=torch.bfloat16).eval()
    x, c_t, sigma = _inputs(2)
    with torch.no_grad():
        out = model(x.bfloat16(), c_t, sigma)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_clear_errors() -> None:
    model = timm.create_model("didirn_small", num_classes=10)
    twin = timm.create_model("didirn_small", num_classes=10, conditional=False)
    x, c_t, sigma = _inputs(2)
    with pytest.raises(ValueError, match="needs c_t"):
        model(x)
    with pytest.raises(ValueError, match="needs c_t"):
        model(x, c_t)
    with pytest.raises(ValueError, match="integer"):
        model(x, c_t.float(), sigma)
    with pytest.raises(ValueError, match="unconditional twin"):
        twin(x, c_t, sigma)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("didirn50", pretrained=True)
    with pytest.raises(ValueError, match="unconditional only"):
        timm.create_model("resnet_small", num_classes=10, conditional=True)
    with pytest.raises(ValueError, match="drop_path_rate"):
        timm.create_model("didirn_small", drop_path_rate=0.1)


def test_timm_kwargs_are_swallowed() -> None:
    model = timm.create_model(
        "didirn_small", num_classes=10, drop_rate=0.2, drop_path_rate=0.0, global_pool="avg", scriptable=False
    )
    assert isinstance(model, DiDiRN) and model.drop_rate == 0.2
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.warns(UserWarning, match="ignoring unsupported kwargs"):
        timm.create_model("didirn_small", num_classes=10, some_unknown_flag=1)


def test_channels_last_activations_give_the_same_scores_as_nchw():
    torch.manual_seed(0)
    net = timm.create_model("didirn_small", num_classes=10).eval()
    x, c_t, sigma = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 1]), torch.tensor([0.1, 1.0, 3.0, 8.0])
    assert net.channels_last  # the default: faster on CPU and GPU (docs/performance.md)
    with torch.no_grad():
        last = net(x, c_t, sigma)
        net.channels_last = False
        nchw = net(x, c_t, sigma)
    torch.testing.assert_close(last, nchw, rtol=1e-4, atol=1e-4)


# ---- late conditioning (cond_stages): the image prefix runs once per image ----


@pytest.mark.parametrize(
    "name, prefix_stages", [("didirn_small", 0), ("didirn_small_late2", 2), ("didirn_small_late1", 3)]
)
def test_prefix_then_conditioned_stages_equal_the_full_forward(name: str, prefix_stages: int) -> None:
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=10).eval()
    assert net.prefix_stages == prefix_stages and net.cond_stages == 4 - prefix_stages
    x, c_t, sigma = _inputs(4)
    with torch.no_grad():
        prefix = net.forward_prefix(x)
        assert torch.equal(net.forward_conditioned(prefix, c_t, sigma), net(x, c_t, sigma))
        # The conditioning still acts, through the conditioned stages only.
        assert not torch.allclose(net.forward_conditioned(prefix, (c_t + 1) % 10, sigma), net(x, c_t, sigma))
    widths = (16, 16, 32, 64)  # stem, then stages 0..2 of didirn_small
    assert prefix.shape == (4, widths[prefix_stages], 32 >> max(0, prefix_stages - 1), 32 >> max(0, prefix_stages - 1))


def test_late_variant_is_didirn_without_the_early_block_conditioning() -> None:
    full = timm.create_model("didirn_small", num_classes=10)
    late = timm.create_model("didirn_small_late1", num_classes=10)
    dropped = set(full.state_dict()) - set(late.state_dict())
    assert not set(late.state_dict()) - set(full.state_dict())
    assert dropped == {n for n in full.state_dict() if "cond_proj" in n and not n.startswith("stages.3.")}
    # Its standard twin is exactly didirn_small's twin.
    twin_late = timm.create_model("didirn_small_late1", num_classes=10, conditional=False)
    twin = timm.create_model("didirn_small", num_classes=10, conditional=False)
    assert twin_late.state_dict().keys() == twin.state_dict().keys() and twin_late.prefix_stages == 0
    assert count_parameters(full) - count_parameters(late) == sum(full.state_dict()[n].numel() for n in dropped)
    with pytest.raises(ValueError, match="cond_stages must be in 1..4"):
        timm.create_model("didirn_small", num_classes=10, cond_stages=0)

"""Conditions, the joint objective and tuning initialisation."""

from __future__ import annotations

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.repcond.conditions import EncoderCondition, LabelCondition, encoder_config
from diffcls.repcond.dit import DiT, dit_config
from diffcls.repcond.model import DenoisingObjective, RepCondModel, build_model, model_spec, tuning_model
from oracle_diffusion import ALPHAS_CUMPROD


def tiny_repcond(size: int = 8, channels: int = 1, d_r: int = 16, seed: int = 0) -> RepCondModel:
    torch.manual_seed(seed)
    dit = DiT(dit_config("dit_tiny", size, channels, d_r=d_r))
    return RepCondModel(dit, EncoderCondition(encoder_config("vit_tiny", size, channels, d_r)))


def encoder_grad_norm(model: RepCondModel) -> float:
    return sum(p.grad.norm().item() for p in model.condition.vit.parameters() if p.grad is not None)


def test_joint_gradients_reach_the_encoder_after_one_step():
    model = tiny_repcond()
    objective = DenoisingObjective(ALPHAS_CUMPROD, cond_dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    z0 = torch.rand(16, 1, 8, 8) * 2 - 1
    projections = {n: p for n, p in model.dit.named_parameters() if n.startswith(("block_proj", "decode_proj"))}
    start = {n: p.detach().clone() for n, p in projections.items()}

    torch.manual_seed(0)
    objective(model, z0)["loss"].backward()
    # At init every projection is zero, so d loss / d r = 0: the encoder gets nothing yet. (adaLN-Zero also
    # zeroes the final Linear, so only the decode projection, added after it, has a gradient.)
    assert encoder_grad_norm(model) == 0.0
    assert projections["decode_proj.weight"].grad.abs().sum() > 0
    optimizer.step()
    optimizer.zero_grad()
    assert not torch.equal(projections["decode_proj.weight"], start["decode_proj.weight"])

    torch.manual_seed(1)
    objective(model, z0)["loss"].backward()  # after one step: joint gradients reach the encoder
    assert all(p.grad is not None for p in model.condition.vit.parameters())
    assert encoder_grad_norm(model) > 0.0
    assert model.condition.vit.patch_embed.proj.weight.grad.abs().sum() > 0  # down to its first layer
    optimizer.step()
    assert all(not torch.equal(p, start[n]) for n, p in projections.items() if n.endswith("weight"))


def test_conditioning_dropout_replaces_r_by_the_null_vector_at_rate_p():
    model = tiny_repcond(size=4, d_r=8)
    with torch.no_grad():
        model.condition.null_vector.fill_(123.0)  # a value the encoder never outputs
    seen = []
    model.dit.register_forward_pre_hook(lambda module, args: seen.append(args[2].detach().clone()))
    objective = DenoisingObjective(ALPHAS_CUMPROD, cond_dropout=0.3)
    torch.manual_seed(0)
    out = objective(model, torch.randn(4000, 1, 4, 4))
    r = seen[0]
    is_null = (r == 123.0).all(1)
    assert torch.equal(is_null, out["drop"])  # exactly the drawn rows, and whole rows
    assert abs(is_null.float().mean().item() - 0.3) < 4 * (0.3 * 0.7 / 4000) ** 0.5
    assert not (r[~is_null] == 123.0).any()


def test_label_dropout_feeds_the_null_class_and_eval_never_drops():
    condition = LabelCondition(num_classes=3, d_r=4)
    labels = torch.tensor([0, 1, 2, 1])
    r = condition(labels, torch.tensor([True, False, True, False]))
    torch.testing.assert_close(r[0], condition.embedding.weight[3])
    torch.testing.assert_close(r[1], condition.embedding.weight[1])
    torch.testing.assert_close(condition(labels), condition.embedding.weight[labels])
    with pytest.raises(DiffclsError, match="dropout"):
        DenoisingObjective(ALPHAS_CUMPROD, cond_dropout=1.0)


def test_tuning_keeps_the_dit_and_places_labels_at_the_class_means():
    pre = tiny_repcond()
    with torch.no_grad():
        for p in pre.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))  # as if trained: projections no longer zero
        pre.condition.null_vector.normal_()
    z0 = torch.randn(6, 1, 8, 8)
    means = torch.stack([pre.condition.represent(z0[:3]).mean(0), pre.condition.represent(z0[3:]).mean(0)]).detach()
    tuned = tuning_model(pre, num_classes=2, class_means=means)
    assert tuned.kind == "label" and tuned.condition.embedding.weight.shape == (3, 16)
    assert all(torch.equal(a, b) for a, b in zip(tuned.dit.state_dict().values(), pre.dit.state_dict().values()))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100, 600])
    with torch.no_grad():
        # label c conditions as the class-mean r does; the null label as the dropped r does
        torch.testing.assert_close(tuned(x, t, torch.tensor([1, 0])), pre.dit(x, t, means[[1, 0]]))
        torch.testing.assert_close(tuned(x, t, torch.tensor([2, 2])), pre.dit(x, t, pre.condition.null.expand(2, -1)))
    spec = model_spec(tuned)
    assert spec["condition"] == {"kind": "label", "num_classes": 2, "d_r": 16}
    assert build_model(spec).state_dict().keys() == tuned.state_dict().keys()


def test_tuning_an_unconditional_dit_adds_zero_projections():
    torch.manual_seed(0)
    plain = RepCondModel(DiT(dit_config("dit_tiny", 8, 1, d_r=None)))
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = tuning_model(plain, num_classes=3, d_r=8)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 900])
    with torch.no_grad():
        torch.testing.assert_close(tuned(x, t, torch.tensor([0, 1, 2])), plain(x, t), rtol=0, atol=0)


def test_rescaled_codes_keep_centre_and_directions_with_unit_spread():
    from diffcls.repcond.model import rescale_codes

    means = 3.0 + 0.05 * torch.randn(10, 16, generator=torch.Generator().manual_seed(1))
    codes = rescale_codes(means)
    centre = means.mean(0)
    torch.testing.assert_close(codes.mean(0), centre)
    assert (codes - centre).pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)  # N(0, 1) codes' spread
    cos = torch.nn.functional.cosine_similarity(codes - centre, means - centre, dim=1)
    torch.testing.assert_close(cos, torch.ones(10))


def test_tuning_the_trunk_alone_is_tuning_a_plain_dit_with_the_same_weights():
    """reset_injection: the rep-cond DiT's projections start at zero, so every label code gives what the plain
    DiT with the pretrained trunk gives, as when tuning an unconditional DiT."""
    pre = tiny_repcond()
    with torch.no_grad():
        for p in pre.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = tuning_model(pre, num_classes=3, reset_injection=True)
    projections = [p for n, p in tuned.dit.named_parameters() if n.startswith(("block_proj", "decode_proj"))]
    assert projections and all(not p.any() for p in projections)
    assert any(p.abs().sum() > 0 for n, p in pre.dit.named_parameters() if n.startswith("block_proj"))  # untouched
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 900])
    with torch.no_grad():
        torch.testing.assert_close(tuned(x, t, torch.tensor([0, 1, 2])), pre.dit(x, t), rtol=0, atol=0)


def test_every_arm_of_one_seed_starts_from_the_same_codes_and_projections():
    """The fair tuning protocol: the rep-cond trunk alone and an unconditional DiT with the same trunk weights start
    from identical label codes and zero projections, so they differ only in what their trunks learnt; the
    rep-cond arm that keeps its projections draws the same codes too. The global RNG (which loading and building
    a model consume differently per arm) does not move the codes."""
    pre = tiny_repcond()
    with torch.no_grad():
        for p in pre.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    plain = RepCondModel(DiT(dit_config("dit_tiny", 8, 1, d_r=None)))
    trunk = {k: v for k, v in pre.dit.state_dict().items() if not k.startswith(("block_proj", "decode_proj"))}
    plain.dit.load_state_dict(trunk)
    torch.manual_seed(1)
    alone = tuning_model(pre, num_classes=3, reset_injection=True, seed=7)
    torch.randn(1000)  # another arm, another history of the global RNG
    unconditional = tuning_model(plain, num_classes=3, d_r=16, seed=7)
    kept = tuning_model(pre, num_classes=3, seed=7)
    codes = alone.condition.embedding.weight[:3]
    assert codes.std().item() == pytest.approx(1.0, abs=0.4)  # N(0, 1) codes
    torch.testing.assert_close(unconditional.condition.embedding.weight[:3], codes, rtol=0, atol=0)
    torch.testing.assert_close(kept.condition.embedding.weight[:3], codes, rtol=0, atol=0)
    other = tuning_model(pre, num_classes=3, seed=8).condition.embedding.weight[:3]
    assert not torch.equal(other, codes)  # the seed, not a constant, sets them
    assert alone.dit.state_dict().keys() == unconditional.dit.state_dict().keys()
    for (name, a), b in zip(alone.dit.state_dict().items(), unconditional.dit.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 900]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(alone(x, t, y), unconditional(x, t, y), rtol=0, atol=0)


def test_representation_statistics_against_hand_computed_values():
    from diffcls.repcond.probe import representation_statistics

    r = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]])
    s = representation_statistics(r, torch.tensor([0, 0, 1, 1]), 2)
    # class means (1, 0) and (1, 4): distance 4; per-dim std (unbiased) of [0,2,0,2] and [0,0,4,4]
    assert s["class_mean_distance_min"] == pytest.approx(4.0) == s["class_mean_distance_mean"]
    assert s["spread"] == pytest.approx((torch.tensor([0.0, 2, 0, 2]).std() + torch.tensor([0.0, 0, 4, 4]).std()) / 2)
    assert s["norm"] == pytest.approx((0 + 2 + 4 + 20**0.5) / 4)
    assert s["between_within"] == pytest.approx(4.0 / 1.0)  # between: 2² on average; within: 1 (x) + 0 (y)
    assert s["random_code_distance"] == pytest.approx(2.0)


def test_spatial_encoder_gives_r_tokens_values_per_token_and_tunes_with_class_maps():
    torch.manual_seed(0)
    config = encoder_config("vit_tiny", 8, 1, r_tokens=3)
    assert config.d_r == 16 * 3  # 4 x 4 tokens of patch 2
    encoder = EncoderCondition(config)
    assert encoder.represent(torch.randn(5, 1, 8, 8)).shape == (5, 48)
    dit = DiT(dit_config("dit_tiny", 8, 1, d_r=48, r_tokens=3))
    pre = RepCondModel(dit, encoder)
    z0 = torch.randn(4, 1, 8, 8)
    means = torch.stack([encoder.represent(z0[:2]).mean(0), encoder.represent(z0[2:]).mean(0)]).detach()
    with torch.no_grad():
        for p in pre.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = tuning_model(pre, num_classes=2, class_means=means)
    assert tuned.condition.embedding.weight.shape == (3, 48)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100, 600])
    with torch.no_grad():  # label c conditions as its class's mean r map does
        torch.testing.assert_close(tuned(x, t, torch.tensor([1, 0])), pre.dit(x, t, means[[1, 0]]))
    assert build_model(model_spec(pre)).condition.config.r_tokens == 3

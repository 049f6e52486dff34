"""The DiT and its injection points: zero-initialised projections leave the plain DiT's output unchanged."""

from __future__ import annotations

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.repcond.dit import INJECTION_PREFIXES, DiT, dit_config, sincos_pos_embed_2d


def randomised_repcond_dit(decode_injection: str = "output", seed: int = 0) -> DiT:
    """A rep-cond DiT whose base weights are random (so its output is not trivially zero) and whose injection
    projections are still at their zero init."""
    torch.manual_seed(seed)
    dit = DiT(dit_config("dit_tiny", 8, 3, d_r=16, decode_injection=decode_injection))
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if not name.startswith(INJECTION_PREFIXES):
                p.normal_(0.0, 0.2)
    return dit.eval()


@pytest.mark.parametrize("decode_injection", ["output", "input"])
def test_zero_initialised_projections_leave_the_plain_dit_unchanged(decode_injection):
    repcond = randomised_repcond_dit(decode_injection)
    plain = DiT(dit_config("dit_tiny", 8, 3, d_r=None)).eval()
    missing, unexpected = plain.load_state_dict(repcond.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith(INJECTION_PREFIXES) for k in unexpected)
    x, t = torch.randn(5, 3, 8, 8), torch.randint(0, 1000, (5,))
    with torch.no_grad():
        reference = plain(x, t)
        assert reference.abs().mean() > 0.1  # a non-trivial output
        for scale in (0.0, 1.0, 100.0):
            torch.testing.assert_close(repcond(x, t, scale * torch.randn(5, 16)), reference, rtol=0, atol=0)
        torch.testing.assert_close(repcond(x, t, None), reference, rtol=0, atol=0)


def test_at_init_a_fresh_repcond_dit_is_the_fresh_plain_dit():
    torch.manual_seed(1)
    repcond = DiT(dit_config("dit_tiny", 8, 1, d_r=16))
    torch.manual_seed(1)
    plain = DiT(dit_config("dit_tiny", 8, 1, d_r=None))
    shared = {k: v for k, v in repcond.state_dict().items() if not k.startswith(INJECTION_PREFIXES)}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())  # same seed, same base weights
    assert all(v.abs().sum() == 0 for k, v in repcond.state_dict().items() if k.startswith(INJECTION_PREFIXES))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    torch.testing.assert_close(repcond(x, t, torch.randn(3, 16)), plain(x, t), rtol=0, atol=0)


@pytest.mark.parametrize("where", ["block", "decode-output", "decode-input"])
def test_every_injection_point_is_live_once_its_projection_moves(where):
    dit = randomised_repcond_dit("input" if where == "decode-input" else "output")
    with torch.no_grad():
        layer = dit.block_proj[1] if where == "block" else dit.decode_proj
        layer.weight.normal_(0.0, 0.1)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    with torch.no_grad():
        a, b = dit(x, t, torch.randn(2, 16)), dit(x, t, torch.randn(2, 16))
    assert (a - b).abs().max() > 1e-3


def test_shapes_patchify_round_trip_and_positional_embedding():
    dit = DiT(dit_config("dit_tiny", 12, 4, d_r=8))
    x = torch.randn(2, 4, 12, 12)
    tokens = dit.patchify(x)
    assert tokens.shape == (2, 36, 16) and torch.equal(dit.unpatchify(tokens), x)
    assert dit(x, torch.tensor([1, 2]), torch.randn(2, 8)).shape == x.shape
    pos = sincos_pos_embed_2d(64, 6)
    assert pos.shape == (36, 64) and torch.unique(pos, dim=0).shape[0] == 36
    assert "pos_embed" not in dit.state_dict()  # fixed, rebuilt from the config


def test_bad_configurations():
    with pytest.raises(DiffclsError, match="unknown DiT"):
        dit_config("dit_huge", 8, 1)
    with pytest.raises(DiffclsError, match="multiple of the patch size"):
        dit_config("dit_small", 30, 1)
    with pytest.raises(DiffclsError, match="without injection points"):
        DiT(dit_config("dit_tiny", 8, 1, d_r=None))(
            torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), torch.zeros(1, 16)
        )


def test_a_spatial_r_acts_token_by_token():
    """r_tokens=c: with the block projections at zero and the decode map added at the output, changing token n's c
    values changes that token's patch of eps_hat and no other; at init the DiT is the plain one."""
    torch.manual_seed(0)
    dit = DiT(dit_config("dit_tiny", 8, 3, d_r=16 * 2, r_tokens=2, decode_injection="output")).eval()
    plain = DiT(dit_config("dit_tiny", 8, 3, d_r=None)).eval()
    plain.load_state_dict(dit.state_dict(), strict=False)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    r = torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(dit(x, t, r), plain(x, t), rtol=0, atol=0)
        dit.decode_proj.weight.normal_(0.0, 0.5)
        moved = r.clone()
        moved[:, 5 * 2 : 6 * 2] += 1.0  # token 5's values
        change = dit.patchify(dit(x, t, moved) - dit(x, t, r)).abs().sum(-1)  # [B, N]
    assert (change[:, 5] > 1e-3).all() and change[:, [n for n in range(16) if n != 5]].abs().max() == 0
    assert dit.block_proj[0].weight.shape == (64, 2) and dit.decode_proj.weight.shape == (2 * 2 * 3, 2)


def test_a_spatial_r_narrower_than_its_patch():
    with pytest.raises(DiffclsError, match="--r-tokens must lie in 1..11"):
        dit_config("dit_tiny", 8, 3, d_r=16 * 12, r_tokens=12)
    with pytest.raises(DiffclsError, match="d_r = 16 x 2"):
        dit_config("dit_tiny", 8, 3, d_r=16, r_tokens=2)

"""Latent codecs: pixel space, and a diffusers AutoencoderKL from a local folder (a tiny one built here)."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from diffcls.errors import DiffclsError
from diffcls.repcond.codec import IdentityCodec, VAECodec, create_codec


def test_identity_codec_keeps_the_first_channels():
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    codec = create_codec(channels=1)
    assert isinstance(codec, IdentityCodec) and codec.latent_shape(8) == (1, 8, 8)
    assert torch.equal(codec.encode(images), images[:, :1])
    assert codec.decode(codec.encode(images)).shape == (2, 3, 8, 8)
    assert create_codec(codec.to_config()).channels == 1


def test_vae_codec_encodes_to_the_scaled_posterior_mean(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.5,
    ).eval()
    (tmp_path / "pipe").mkdir()
    vae.save_pretrained(tmp_path / "pipe" / "vae")  # a pipeline folder holding vae/
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    for folder in (tmp_path / "pipe", tmp_path / "pipe" / "vae"):
        codec = create_codec(vae=str(folder))
        assert isinstance(codec, VAECodec) and codec.latent_shape(16) == (4, 8, 8)
        with torch.no_grad():
            expected = vae.encode(images).latent_dist.mean * 0.5
        torch.testing.assert_close(codec.encode(images), expected)
        assert codec.decode(codec.encode(images)).shape == images.shape
        assert not any(p.requires_grad for p in codec.parameters())
        assert create_codec(codec.to_config()).scaling_factor == 0.5
    with pytest.raises(DiffclsError, match="multiple"):
        codec.latent_shape(15)
    with pytest.raises(DiffclsError, match="not an AutoencoderKL folder"):
        VAECodec(tmp_path)

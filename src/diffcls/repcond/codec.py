"""Latent codecs: images float[B, 3, S, S] in [-1, 1] -> z0 float[B, C, S/f, S/f] (and back).

* ``identity`` (default, for small images): pixel space, f = 1; the first ``channels`` channels are kept (the data
  pipeline repeats grayscale to 3 channels; 1 channel is enough for digits).
* ``vae``: a diffusers ``AutoencoderKL`` read from a local folder (a VAE folder, or a pipeline folder with a
  ``vae/`` sub-folder; nothing is downloaded). z0 = posterior **mean** x ``scaling_factor``, as the Diffusion
  Classifier's DiT code and :mod:`diffcls.generative.pretrained` do. The VAE is frozen.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from diffcls.errors import DiffclsError, first_line

__all__ = ["Codec", "IdentityCodec", "VAECodec", "create_codec"]


class Codec(nn.Module):
    """``encode(images) -> z0``, ``decode(z0) -> images``; ``latent_shape(S)`` is (C, S/f, S/f)."""

    def latent_shape(self, img_size: int) -> tuple[int, int, int]:
        raise NotImplementedError

    def to_config(self) -> dict:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class IdentityCodec(Codec):
    """Pixel space: z0 = images[:, :channels]; decode repeats grayscale back to 3 channels."""

    def __init__(self, channels: int = 3):
        super().__init__()
        if channels not in (1, 3):
            raise DiffclsError(f"pixel space takes 1 or 3 channels, got {channels}")
        self.channels = channels

    def latent_shape(self, img_size: int) -> tuple[int, int, int]:
        return self.channels, img_size, img_size

    def to_config(self) -> dict:
        return {"kind": "identity", "channels": self.channels}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, : self.channels]

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return z0.expand(-1, 3, -1, -1) if z0.shape[1] == 1 else z0


class VAECodec(Codec):
    """A frozen ``AutoencoderKL`` from ``path`` (its folder or a pipeline folder holding ``vae/``)."""

    def __init__(self, path: str | Path):
        super().__init__()
        from diffusers import AutoencoderKL

        folder = Path(path)
        if (folder / "vae" / "config.json").is_file():
            folder = folder / "vae"
        if not (folder / "config.json").is_file():
            raise DiffclsError(f"{path} is not an AutoencoderKL folder (no config.json, no vae/config.json)")
        try:
            self.vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
            raise DiffclsError(f"cannot load the AutoencoderKL in {folder}: {first_line(e)}") from None
        self.vae.eval().requires_grad_(False)
        self.path = str(path)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def train(self, mode: bool = True) -> VAECodec:
        return super().train(False)  # frozen: always in eval mode

    def latent_shape(self, img_size: int) -> tuple[int, int, int]:
        if img_size % self.factor:
            raise DiffclsError(
                f"the VAE downsamples by {self.factor}: the image size must be a multiple of it, got {img_size}"
            )
        return int(self.vae.config.latent_channels), img_size // self.factor, img_size // self.factor

    def to_config(self) -> dict:
        return {"kind": "vae", "path": self.path}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images).latent_dist.mean * self.scaling_factor

    @torch.no_grad()
    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z0 / self.scaling_factor).sample


def create_codec(config: dict | None = None, *, vae: str | None = None, channels: int = 3) -> Codec:
    """A codec from its ``to_config()`` dict, or: a VAE folder ``vae``, else pixel space with ``channels``."""
    if config is None:
        config = {"kind": "vae", "path": vae} if vae else {"kind": "identity", "channels": channels}
    if config.get("kind") == "identity":
        return IdentityCodec(int(config.get("channels", 3)))
    if config.get("kind") == "vae":
        return VAECodec(config["path"])
    raise DiffclsError(f"unknown latent codec {config!r}")

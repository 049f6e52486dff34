"""Turn a trained network into class probabilities, per method.

* ``standard``: softmax of the logits (1 network evaluation per image).
* ``didicm``: one of the DiDiCM samplers (``cp``, ``cl``, ``onepass``) driven by the network with the image bound,
  so the samplers see only ``score_fn(c_t, sigma) -> log scores``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Literal

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from diffcls.didicm import SAMPLERS, nfe_per_image


@dataclass
class SamplerConfig:
    """How DiDiCM turns scores into probabilities. Ignored by the standard classifier."""

    sampler: Literal["cp", "cl", "onepass"] = "cp"
    steps: int = 8
    chains: int = 10
    cp_update: Literal["euler", "analytic"] = "euler"
    cp_reference: Literal["min", "max", "random"] = "min"

    def nfe(self, method: str) -> int:
        """Network evaluations per image."""
        if method != "didicm":
            return 1
        return nfe_per_image(self.sampler, self.steps, self.chains)

    def to_dict(self, method: str) -> dict:
        d = asdict(self)
        return d if method == "didicm" else {"sampler": "softmax", "steps": None, "chains": None}


def bind_image(model: nn.Module, images: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``score_fn(c_t: int64[M], sigma: float[M]) -> float[M, K]`` for a conditional model and images ``[B, ...]``.

    M may be a multiple of B (CL runs its chains in one call): row ``b * (M // B) + n`` belongs to image b, the
    samplers' chain layout. The repeated batch is built once and reused at every step.
    """
    cache: dict[int, torch.Tensor] = {len(images): images}

    def score_fn(c_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        m = len(c_t)
        if m not in cache:
            cache[m] = images.repeat_interleave(m // len(images), dim=0)
        return model(cache[m], c_t, sigma).float()

    return score_fn


@torch.inference_mode()
def predict_proba(model: nn.Module, method: str, images: torch.Tensor, sampler: SamplerConfig | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Class probabilities ``float[B, K]`` for a batch of images ``[B, 3, S, S]``."""
    if method == "standard":
        return model(images).float().softmax(dim=-1)
    sampler = sampler or SamplerConfig()
    kwargs: dict = {"generator": generator}
    if sampler.sampler == "cp":
        kwargs.update(steps=sampler.steps, update=sampler.cp_update, reference=sampler.cp_reference)
    elif sampler.sampler == "cl":
        kwargs.update(steps=sampler.steps, chains=sampler.chains)
        # CL calls the network with B * chains rows; split the batch so a call stays near B rows, since a
        # 10x larger batch ran over 2x slower per row on a 2-core CPU (cache misses), and it bounds memory.
        parts = images.split(max(1, len(images) // sampler.chains))
        return torch.cat([_run_sampler(model, part, sampler.sampler, kwargs) for part in parts])
    return _run_sampler(model, images, sampler.sampler, kwargs)


def _run_sampler(model: nn.Module, images: torch.Tensor, sampler: str, kwargs: dict) -> torch.Tensor:
    return SAMPLERS[sampler](bind_image(model, images), len(images), model.num_classes, **kwargs).float()


def predict_loader(model: nn.Module, method: str, batches: Iterable, sampler: SamplerConfig | None = None,
                   device: torch.device | str = "cpu", seed: int = 0, desc: str = "eval",
                   progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``float32[N, K]`` and labels ``int64[N]`` over a loader, in data-set order.

    ``progress=None`` shows a bar only on a terminal. Sampling randomness is seeded by ``seed`` for repeatability.
    """
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    probs, labels = [], []
    for images, y in tqdm(batches, desc=desc, disable=None if progress is None else not progress, leave=False):
        probs.append(predict_proba(model, method, images.to(device), sampler, generator).cpu())
        labels.append(y)
    return torch.cat(probs), torch.cat(labels)

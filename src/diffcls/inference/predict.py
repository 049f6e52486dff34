"""From a trained network to class probabilities, shared by training's validation and evaluation.

A method turns its model into a :data:`Readout` (``images, generator -> probs``); :func:`predict_dataset` runs one
over a data set, sharded under torchrun. :func:`sample_proba` is DiDiCM's readout: a sampler of
:data:`diffcls.didicm.SAMPLERS` driven by the network with the image bound (:func:`bind_image`), so the samplers
see only ``score_fn(c_t, sigma) -> log scores``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm  # not tqdm.auto: its asyncio bar calls iter() at once, starting idle loader workers

from diffcls.didicm import SamplerConfig
from diffcls.errors import DiffclsError
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist


def bind_image(model: nn.Module, images: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``score_fn(c_t: int64[M], sigma: float[M]) -> float[M, K]`` for a conditional model and images ``[B, ...]``.

    M may be a multiple of B (CL runs its chains in one call): row ``b * (M // B) + n`` belongs to image b, the
    samplers' chain layout. A late-conditioned DiDiRN's image prefix (stem and unconditioned stages, see
    ``DiDiRN.forward_prefix``) does not depend on (c_t, sigma), so it is computed once here and only the
    conditioned stages run per call; other models get the images. Either input is repeated for M rows once and
    reused at every step. Only in eval mode: in training mode BatchNorm would update its running statistics
    once instead of once per step. A stem alone is not worth sharing: its output is 5x the input's size, and
    sharing it measured 1.00x (CP-8) and 0.85x (CL, whose chains repeat it) the speed of rerunning it
    (benchmarks/late_conditioning.py).
    """
    if getattr(model, "prefix_stages", 0) > 0 and not model.training:
        inputs, run = model.forward_prefix(images), model.forward_conditioned
    else:
        inputs, run = images, model
    cache: dict[int, torch.Tensor] = {len(images): inputs}

    def score_fn(c_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        m = len(c_t)
        if m not in cache:
            cache[m] = inputs.repeat_interleave(m // len(images), dim=0)
        return run(cache[m], c_t, sigma).float()

    return score_fn


Readout = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""``readout(images [B, 3, S, S], generator) -> probs float[B, K]``: a trained model read out one way (a method's
:meth:`~diffcls.methods.classifier.ClassifierMethod.readout`). A readout asked for its method's native uncertainty
scores returns ``(probs, {name: float64[B]})``."""


@torch.inference_mode()
def sample_proba(
    model: nn.Module,
    images: torch.Tensor,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
    native_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Class probabilities ``float[B, K]`` of a conditional model (a DiDiRN) for images ``[B, 3, S, S]``, by the
    DiDiCM sampler that ``sampler`` names; with ``native_scores``, also the sampler's own uncertainty scores
    ``{name: float64[B]}`` (:attr:`~diffcls.didicm.samplers.SamplerSpec.native_scores`, from its trajectory)."""
    spec = sampler.spec
    kwargs = {**spec.kwargs(sampler), "generator": generator}
    # A sampler that calls the network with B × rows rows (CL's chains): split the batch so a call stays near B
    # rows, since a 10x larger batch ran over 2x slower per row on a 2-core CPU (cache misses), and it bounds
    # memory.
    parts = images.split(max(1, len(images) // spec.rows_per_image(sampler)))
    probs, scores = [], []
    for part in parts:
        trajectory = [] if native_scores else None
        probs.append(spec.fn(bind_image(model, part), len(part), model.num_classes, trajectory=trajectory, **kwargs))
        if native_scores:
            scores.append(spec.trajectory_scores(trajectory))
    probs = torch.cat(probs).float()
    if not native_scores:
        return probs
    return probs, {name: torch.cat([s[name] for s in scores]) for name in spec.native_scores}


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch's sampling randomness: a function of the batch's place, not of the process that
    runs it, so a sharded evaluation draws what a single process draws."""
    return seed * 1_000_003 + batch_index


def predict_dataset(
    readout: Readout,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    workers: int = 0,
    desc: str = "eval",
    progress: bool | None = None,
    dist: Dist = SINGLE_PROCESS,
    scores_out: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``float32[N, K]`` from ``readout`` and labels ``int64[N]`` of a data set, in data-set order,
    on every rank. A readout that also returns per-image scores (see :data:`Readout`) puts them, as
    ``{name: float64[N]}`` in data-set order, in ``scores_out`` (a dict given by the caller).

    The data set is cut into fixed batches of ``batch_size`` consecutive images; under torchrun each rank runs
    every ``world_size``-th batch and the results are gathered. Each batch's sampling randomness is seeded by
    :func:`batch_seed`, so the result is the same for any number of processes. ``progress=None`` shows a bar
    only on a terminal (and only on rank 0).
    """
    if batch_size < 1:
        raise DiffclsError(f"--batch-size must be >= 1, got {batch_size}")
    n = len(dataset)
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    mine = dist.shard_batches(batches)
    loader = DataLoader(dataset, batch_sampler=[b for _, b in mine], num_workers=workers)
    generator = torch.Generator(device=device)
    hide = not dist.is_main or (None if progress is None else not progress)
    done = []
    for (j, _), (images, y) in zip(mine, tqdm(loader, desc=desc, disable=hide, leave=False)):
        generator.manual_seed(batch_seed(seed, j))
        with torch.inference_mode():
            out = readout(images.to(device), generator)
        probs, scores = out if isinstance(out, tuple) else (out, {})
        done.append((j, probs.float().cpu(), y, {name: v.double().cpu() for name, v in scores.items()}))
    gathered = sorted((item for part in dist.all_gather(done) for item in part), key=lambda item: item[0])
    if scores_out is not None and gathered:
        scores_out.update({name: torch.cat([s[name] for *_, s in gathered]) for name in gathered[0][3]})
    return torch.cat([p for _, p, _, _ in gathered]), torch.cat([y for _, _, y, _ in gathered])

"""Evaluation entry points over checkpoint folders: DC Zero, the t-sweep, the linear probe, the leakage check.

Splits: ``test``; ``train``; ``val``, the images of the training split held out by ``val_holdout`` at training
time (:func:`~diffcls.data.datasets.holdout_split`; the t-sweep belongs there, not on the test split).
``limit`` takes the first N images of a fixed stratified order (every prefix holds all classes).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from diffcls.data import (
    ImageDataset,
    ImageTransform,
    Split,
    data_ratio_indices,
    load_source,
    stratified_order,
    subset_split,
)
from diffcls.data.datasets import holdout_split
from diffcls.errors import DiffclsError
from diffcls.generative.calibration import fit_temperature
from diffcls.inference.metrics import classification_metrics
from diffcls.runtime.io import atomic_write

from .dc_zero import (
    Aggregate,
    TSweep,
    classification_scores,
    dc_zero_predict,
    sweep_timesteps,
    t_sweep,
    timestep_noise,
)
from .model import LoadedCheckpoint, load_checkpoint
from .probe import encode_dataset, linear_probe, representations

__all__ = [
    "select_split",
    "evaluate_dc_zero",
    "run_t_sweep",
    "sweep_temperature",
    "plot_t_sweep",
    "probe_encoder",
    "leakage_check",
]

SplitName = Literal["train", "val", "test"]


def select_split(
    loaded: LoadedCheckpoint,
    data: str | None,
    split: SplitName,
    limit: int | None = None,
    val_holdout: int | None = None,
) -> tuple[Split, int]:
    """(the images to score, K). ``data`` defaults to the checkpoint's; ``val_holdout`` to its training value."""
    source = load_source(data or loaded.config["data"])
    holdout = loaded.config.get("train", {}).get("val_holdout", 0) if val_holdout is None else val_holdout
    if split == "test":
        chosen = source.test
    elif split in ("train", "val"):
        if split == "val" and not holdout:
            raise DiffclsError("no validation split: the model was trained with val_holdout 0 (pass val_holdout)")
        train, val = holdout_split(source.train, holdout) if holdout else (source.train, None)
        chosen = val if split == "val" else train
    else:
        raise DiffclsError(f"unknown split {split!r}; choose train, val or test")
    if limit is not None:
        chosen = subset_split(chosen, np.sort(stratified_order(chosen.labels)[:limit]))
    return chosen, source.num_classes


def _latents(loaded: LoadedCheckpoint, split: Split, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return encode_dataset(loaded.codec, ImageDataset(split, ImageTransform(loaded.transform)), device=device)


def _label_model(loaded: LoadedCheckpoint, folder) -> None:
    if loaded.model.kind != "label":
        raise DiffclsError(
            f"{folder} is not label-conditioned (method {loaded.config['method']}): DC Zero needs a "
            f"repcond-tune checkpoint"
        )


def run_t_sweep(
    checkpoint: str | Path,
    data: str | None = None,
    *,
    split: SplitName = "val",
    limit: int | None = 200,
    step: int = 50,
    timesteps: list[int] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    val_holdout: int | None = None,
) -> TSweep:
    """DC Zero accuracy at every t of ``timesteps`` (default 50, 100, ..., 950 by ``step``) on a split."""
    loaded = load_checkpoint(checkpoint, device)
    _label_model(loaded, checkpoint)
    images, k = select_split(loaded, data, split, limit, val_holdout)
    z0, labels = _latents(loaded, images, device)
    grid = torch.as_tensor(timesteps) if timesteps else sweep_timesteps(step, len(loaded.alphas_cumprod))
    return t_sweep(loaded.model, z0, labels, k, loaded.alphas_cumprod, grid, seed=seed, batch_size=batch_size)


def sweep_temperature(sweep: TSweep, t: int | None = None) -> float:
    """lambda of softmax(-lambda * error) fitted by NLL on the sweep's images at ``t`` (default: the best t)."""
    j = sweep.best_index if t is None else int(torch.nonzero(sweep.timesteps == t)[0, 0])
    return fit_temperature(sweep.errors[:, None, :, j].double(), sweep.labels)


def plot_t_sweep(sweeps: dict[str, TSweep], path: str | Path, title: str = "DC Zero: accuracy against t") -> Path:
    """One accuracy-against-t line per labelled sweep, the best t marked; a PNG written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for label, sweep in sweeps.items():
        (line,) = ax.plot(sweep.timesteps.tolist(), sweep.accuracy.tolist(), marker="o", ms=3, label=label)
        ax.plot([sweep.best_t], [float(sweep.accuracy.max())], marker="*", ms=12, color=line.get_color())
    ax.set_xlabel("timestep t (of 1000)")
    ax.set_ylabel("top-1 on the validation images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the axes, off the lines
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return Path(path)


def evaluate_dc_zero(
    checkpoint: str | Path,
    data: str | None = None,
    *,
    split: SplitName = "test",
    timesteps: int | list[int] = 500,
    aggregate: Aggregate = "relative",
    limit: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    noise_draws: int = 1,
) -> dict:
    """Diffusion Classifier Zero on a split: one t (the paper) or several (``aggregate``), each class's error at a
    t averaged over ``noise_draws`` shared noises (1: the paper's single draw).

    Returns the ``--results-file`` fields (``top1``, ``top5``, ``nll``, ``ece`` from softmax(-temperature x the
    error at one t, or the relative error over several), ``num_samples``, ``nfe_per_image`` = K x J, ``seconds``,
    ``method``) plus ``accuracy``, ``f1_macro``, ``f1_binary`` (K = 2), ``timesteps``, ``aggregate``,
    ``noise_draws`` and ``probs`` float32[N, K] (pop it before writing JSON).
    """
    tic = time.perf_counter()
    loaded = load_checkpoint(checkpoint, device)
    _label_model(loaded, checkpoint)
    images, k = select_split(loaded, data, split, limit)
    z0, labels = _latents(loaded, images, device)
    grid = torch.as_tensor(timesteps, dtype=torch.long).view(-1)
    noise = timestep_noise(grid, tuple(z0.shape[1:]), seed, noise_draws)  # [J * D, ...], t-major
    errors = t_sweep(
        loaded.model, z0, labels, k, loaded.alphas_cumprod, grid.repeat_interleave(noise_draws), noise,
        batch_size=batch_size,
    ).errors.view(len(z0), k, len(grid), noise_draws).mean(-1)  # fmt: skip
    predictions, labels = dc_zero_predict(errors, aggregate), labels.cpu()
    # Logits: -temperature x the error at one t; over several t, x the relative error (each t weighs the same).
    errors64 = errors.double()
    scores = errors64[..., 0] if len(grid) == 1 else (errors64 / errors64.mean(1, keepdim=True)).mean(-1)
    probs = torch.softmax(-temperature * scores, 1).float()
    results = classification_metrics(probs, labels)
    results.update(classification_scores(predictions, labels, k))
    results["top1"] = results["accuracy"]  # the argmin rule (equal to argmax probs up to ties)
    results.update(
        method="dc-zero",
        timesteps=grid.tolist(),
        aggregate=aggregate,
        temperature=temperature,
        nfe_per_image=k * len(grid) * noise_draws,
        noise_draws=noise_draws,
        seconds=round(time.perf_counter() - tic, 2),
        split=split,
        probs=probs,
    )
    return results


def probe_encoder(
    checkpoint: str | Path,
    data: str | None = None,
    *,
    data_ratio: float = 1.0,
    limit: int | None = None,
    c: float = 1.0,
    device: str = "cpu",
) -> dict:
    """Linear probe on the frozen encoder of a ``repcond-pretrain`` folder: fitted on the training split (the
    ``data_ratio`` subset that tuning with the same ratio and ``val_holdout`` uses), scored on the test split.
    Returns ``accuracy``, ``f1_macro`` (``f1_binary``), ``probs``."""
    loaded = load_checkpoint(checkpoint, device)
    if loaded.model.kind != "encoder":
        raise DiffclsError(f"{checkpoint} has no encoder (method {loaded.config['method']})")
    train, _ = select_split(loaded, data, "train")  # without the held-out validation images
    if data_ratio < 1.0:
        train = subset_split(train, data_ratio_indices(train.labels, data_ratio))
    test, k = select_split(loaded, data, "test", limit)
    (z_train, y_train), (z_test, y_test) = _latents(loaded, train, device), _latents(loaded, test, device)
    encoder = loaded.model.condition
    return linear_probe(representations(encoder, z_train), y_train, representations(encoder, z_test), y_test, k, c)


def _last_val_loss(folder: str | Path) -> float:
    path = Path(folder) / "metrics.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1]["val_loss"])
    except (OSError, IndexError, KeyError, ValueError):
        raise DiffclsError(f"{path}: no val_loss of a finished epoch") from None


def _bottleneck(folder: str | Path) -> tuple[int, int] | None:
    """(values of r per image, values of z0 per image) of a rep-cond folder's encoder; None without an encoder."""
    try:
        spec = json.loads((Path(folder) / "config.json").read_text())["repcond"]["model"]
        encoder, dit = spec["condition"]["encoder"], spec["dit"]
        return int(encoder["d_r"]), int(dit["in_channels"]) * int(dit["input_size"]) ** 2
    except (OSError, KeyError, TypeError, ValueError):
        return None


def leakage_check(repcond_folder: str | Path, uncond_folder: str | Path, threshold: float = 0.5) -> dict:
    """Compare held-out denoising losses of a rep-cond and an unconditional DiT of the same size and recipe, beside
    the width of r's bottleneck (the spec's leakage pitfall: an r wide enough to carry z0 lets the denoiser read
    eps off ``(z_t - sqrt(abar) z0) / sqrt(1 - abar)``).

    Returns ``{"repcond_loss", "uncond_loss", "ratio", "r_values", "z0_values", "bottleneck", "leak"}``:
    ``bottleneck`` = r's values per image / z0's (None where the folder's config does not say). A useful r lowers
    the ratio too (a spatial r halves it on mnist5k), so a low ratio alone does not prove a leak: ``leak`` is set
    when the ratio is below ``threshold`` *and* r is not narrower than z0 (or its width is unknown).
    """
    rep, unc = _last_val_loss(repcond_folder), _last_val_loss(uncond_folder)
    ratio = rep / max(unc, 1e-12)
    widths = _bottleneck(repcond_folder)
    r_values, z0_values = widths if widths else (None, None)
    bottleneck = round(r_values / z0_values, 6) if widths else None
    can_copy = bottleneck is None or bottleneck >= 1.0
    return {
        "repcond_loss": rep,
        "uncond_loss": unc,
        "ratio": round(ratio, 6),
        "r_values": r_values,
        "z0_values": z0_values,
        "bottleneck": bottleneck,
        "leak": ratio < threshold and can_copy,
    }

"""Diffusion Classifier Zero (arXiv 2505.06890): classify by the lowest reconstruction error of z0.

For a label-conditioned denoiser, one timestep t and one noise eps shared by all classes,

    z_t = gamma z0 + delta eps,   z0_hat(c) = (z_t - delta eps_hat(z_t, t, c)) / gamma,
    y = argmin_c ||z0 - z0_hat(c)||^2

with gamma = sqrt(abar_t), delta = sqrt(1 - abar_t). Since z0 - z0_hat(c) = (delta / gamma)(eps_hat_c - eps), the
reconstruction error is the Diffusion Classifier's eps-error times (1 - abar_t) / abar_t: the errors are computed
by :func:`diffcls.generative.scoring.noise_prediction_errors` (shared noise, batched classes) and rescaled.

* **Single t** (the paper): ``dc_zero_predict(errors[:, :, [j]])``.
* **Choosing t:** :func:`t_sweep` scores a validation split at every t of a grid (50, 100, ..., 950 by default) and
  keeps the most accurate. The noise at t depends only on (seed, t) (:func:`timestep_noise`), so the sweep's
  accuracy at t is exactly what single-t classification at t gives on the same images.
* **Several noise draws at one t** (``noise_draws`` of :func:`diffcls.repcond.evaluate.evaluate_dc_zero`): each
  class's error is the mean over D shared noises at that t, which lowers the variance of the single draw.
* **Several t:** ``aggregate="relative"`` (default: argmin of the mean over t of each t's errors divided by their
  mean over classes, so every t weighs the same), ``"mean"`` (argmin of the plain mean of the paper's reconstruction
  error over t; (1 - abar)/abar grows from 0.03 at t = 50 to 9,400 at t = 950, so the largest t dominate it) or
  ``"vote"`` (the majority of the per-t argmins, as Favero et al.; ties go to the lower relative error).

Probabilities for NLL/ECE: ``softmax(-lambda * error)`` with lambda fitted on held-out images by
:func:`diffcls.generative.calibration.fit_temperature` (:func:`diffcls.repcond.evaluate.sweep_temperature` fits
it at one t of a sweep).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_f1_score, multiclass_f1_score

from diffcls.errors import DiffclsError
from diffcls.generative.scoring import EpsFn, noise_prediction_errors

__all__ = [
    "sweep_timesteps",
    "timestep_noise",
    "dc_zero_errors",
    "dc_zero_predict",
    "classification_scores",
    "TSweep",
    "sweep_from_errors",
    "t_sweep",
]

Aggregate = Literal["relative", "mean", "vote"]


def sweep_timesteps(step: int = 50, num_train_timesteps: int = 1000) -> Tensor:
    """The sweep grid ``step, 2 step, ... < T``: int64[J] (50, 100, ..., 950 by default)."""
    if not 1 <= step < num_train_timesteps:
        raise DiffclsError(f"the sweep step must lie in 1..{num_train_timesteps - 1}, got {step}")
    return torch.arange(step, num_train_timesteps, step)


def timestep_noise(timesteps: Iterable[int] | Tensor, shape: tuple[int, ...], seed: int = 0, draws: int = 1) -> Tensor:
    """``draws`` noises per timestep, shared by every image and class: float32[J * draws, *shape], row
    ``j * draws + d`` for draw d at ``timesteps[j]``. Draw d at t depends only on (seed, t, d); draw 0 is the
    single-draw noise (seeded by ``seed * 1_000_003 + t``), so more draws only add to it."""
    if draws < 1:
        raise DiffclsError(f"the number of noise draws must be >= 1, got {draws}")
    out = []
    for t in torch.as_tensor(timesteps).view(-1).tolist():
        for d in range(draws):
            key = (
                seed * 1_000_003 + int(t)
                if d == 0
                else int(np.random.SeedSequence([seed, int(t), d]).generate_state(1)[0])
            )
            out.append(torch.randn(shape, generator=torch.Generator().manual_seed(key)))
    return torch.stack(out)


def dc_zero_errors(
    eps_fn: EpsFn,
    z0: Tensor,
    num_classes: int,
    alphas_cumprod: Tensor,
    timesteps: int | Iterable[int] | Tensor,
    noise: Tensor,
    *,
    batch_size: int = 256,
) -> Tensor:
    """Reconstruction errors ``mean_{C,H,W} (z0 - z0_hat(c))^2`` of every class at every timestep.

    Args:
        eps_fn: a label-conditioned denoiser ``(x_t, t, class_labels) -> eps_hat`` in eval mode.
        z0: clean latents float[B, C, H, W].
        num_classes: K; candidates 0..K-1.
        alphas_cumprod: float[T] of the training schedule.
        timesteps: one t or int64[J].
        noise: float[J, C, H, W] (shared by all images) or float[B, J, C, H, W]; noise j goes with timesteps[j].
    Returns:
        float32[B, K, J].
    """
    timesteps = torch.as_tensor(timesteps, dtype=torch.long).view(-1)
    if noise.dim() == z0.dim():
        noise = noise[None].expand(len(z0), *noise.shape)
    classes = torch.arange(num_classes, device=z0.device).expand(len(z0), -1)
    eps_errors = noise_prediction_errors(
        eps_fn,
        z0,
        classes,
        timesteps.to(z0.device),
        noise.to(z0.device),
        alphas_cumprod,
        loss="l2",
        batch_size=batch_size,
    )
    abar = alphas_cumprod.double()[timesteps.cpu()]
    return eps_errors * ((1 - abar) / abar).float().to(eps_errors.device)


def dc_zero_predict(errors: Tensor, aggregate: Aggregate = "relative") -> Tensor:
    """Predicted classes int64[B] from errors float[B, K, J] (J = 1: the single-t rule, whatever ``aggregate``)."""
    if errors.shape[-1] == 1 or aggregate == "mean":
        return errors.mean(-1).argmin(1)
    relative = (errors / errors.mean(1, keepdim=True).clamp_min(1e-30)).mean(-1)  # [B, K]
    if aggregate == "relative":
        return relative.argmin(1)
    if aggregate == "vote":
        num_classes = errors.shape[1]
        votes = torch.nn.functional.one_hot(errors.argmin(1), num_classes).sum(1).float()  # [B, K]
        rank = relative.argsort(1).argsort(1).float()  # 0 = lowest relative error; rank / K < 1 only breaks ties
        return (votes - rank / num_classes).argmax(1)
    raise DiffclsError(f"unknown aggregation {aggregate!r}; choose relative, mean or vote")


def classification_scores(predictions: Tensor, labels: Tensor, num_classes: int) -> dict:
    """``accuracy``, ``f1_macro`` (unweighted mean of per-class F1 over the K classes) and, when K == 2,
    ``f1_binary`` (F1 of class 1 as the positive class)."""
    predictions, labels = predictions.long().cpu(), labels.long().cpu()
    scores = {
        "accuracy": (predictions == labels).float().mean().item(),
        "f1_macro": multiclass_f1_score(predictions, labels, num_classes, average="macro").item(),
    }
    if num_classes == 2:
        scores["f1_binary"] = binary_f1_score(predictions, labels).item()
    return scores


@dataclass
class TSweep:
    """Per-timestep DC Zero accuracy on a validation set.

    timesteps: int64[J]; accuracy: float[J]; errors: float32[N, K, J]; labels: int64[N].
    """

    timesteps: Tensor
    accuracy: Tensor
    errors: Tensor
    labels: Tensor

    @property
    def best_index(self) -> int:
        """The most accurate t's index (ties: the smallest t)."""
        return int(torch.nonzero(self.accuracy == self.accuracy.max())[0, 0])

    @property
    def best_t(self) -> int:
        return int(self.timesteps[self.best_index])

    def scores(self, t: int | None = None, aggregate: Aggregate | None = None) -> dict:
        """Scores at one t (default: the best), or of all t together with ``aggregate``."""
        if aggregate is not None:
            predictions = dc_zero_predict(self.errors, aggregate)
        else:
            j = self.best_index if t is None else int(torch.nonzero(self.timesteps == t)[0, 0])
            predictions = dc_zero_predict(self.errors[:, :, j : j + 1])
        return classification_scores(predictions, self.labels, self.errors.shape[1])

    def rows(self) -> list[dict]:
        """One JSON-able row per t: ``{"t", "accuracy"}``."""
        return [{"t": int(t), "accuracy": round(float(a), 6)} for t, a in zip(self.timesteps, self.accuracy)]


def sweep_from_errors(errors: Tensor, labels: Tensor, timesteps: Tensor) -> TSweep:
    """A :class:`TSweep` from precomputed errors float[N, K, J] (e.g. concatenated over batches)."""
    labels = labels.long().to(errors.device)
    accuracy = (errors.argmin(1) == labels[:, None]).float().mean(0)
    return TSweep(torch.as_tensor(timesteps).cpu(), accuracy.cpu(), errors.cpu(), labels.cpu())


def t_sweep(
    eps_fn: EpsFn,
    z0: Tensor,
    labels: Tensor,
    num_classes: int,
    alphas_cumprod: Tensor,
    timesteps: Tensor | None = None,
    noise: Tensor | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
    images_per_batch: int = 64,
) -> TSweep:
    """DC Zero accuracy of a validation set z0 float[N, C, H, W], labels int64[N] at every t of ``timesteps``
    (default :func:`sweep_timesteps`), ``images_per_batch`` images at a time. ``noise`` float[J, C, H, W] (or
    float[N, J, C, H, W]) defaults to :func:`timestep_noise` (``seed``)."""
    timesteps = (
        sweep_timesteps(num_train_timesteps=len(alphas_cumprod))
        if timesteps is None
        else torch.as_tensor(timesteps, dtype=torch.long).view(-1)
    )
    noise = timestep_noise(timesteps, tuple(z0.shape[1:]), seed) if noise is None else noise
    errors = []
    for i in range(0, len(z0), images_per_batch):
        batch_noise = noise[i : i + images_per_batch] if noise.dim() > z0.dim() else noise
        errors.append(
            dc_zero_errors(
                eps_fn,
                z0[i : i + images_per_batch],
                num_classes,
                alphas_cumprod,
                timesteps,
                batch_noise,
                batch_size=batch_size,
            )
        )
    return sweep_from_errors(torch.cat(errors), labels, timesteps)

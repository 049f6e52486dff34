"""Adaptive evaluation: successive elimination of classes (Diffusion Classifier, Algorithm 2).

A schedule is a pair of lists: ``n_samples`` n_1 < ... < n_S (timesteps a class alive at stage s has been scored
on) and ``to_keep`` k_1 > ... > k_S = 1 (classes kept after stage s). Stage 1 scores all K classes.

**Nested grids.** All stages draw from one evenly spaced grid of M = n_S timesteps. Stage 1 takes the evenly
spaced n_1 of them (the reference code's rule); every later stage keeps the earlier timesteps and adds new ones
in the largest gaps (farthest-point order, ties spread over the whole range). So a class alive at stage s has
been scored on exactly n_s distinct timesteps, and the cost per image is the paper's count

    NFE = sum_s |alive_s| * (n_s - n_{s-1}),   |alive_1| = K, |alive_s| = min(k_{s-1}, K).

(The reference code's per-stage grids do not nest and cost up to 25% more: 124,500 instead of 100,000 network
evaluations for its ImageNet schedule.) Noise j is tied to grid timestep j, so every class sees the same
(t, eps) pairs.

**Probabilities.** An eliminated class has errors on fewer timesteps than the winner, and errors depend
strongly on t, so their means are not comparable across stages. Probabilities are therefore built stage by
stage: at stage s the classes alive are compared on the n_s timesteps they all share, softmax(-lambda * mean
error); the classes eliminated at s keep their share, and the share of the survivors is split by the next stage.
Probabilities sum to 1, and a flat schedule reduces to softmax(-lambda * mean error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from diffcls.errors import DiffclsError
from diffcls.models.noise_predictors import scores_all_classes

from .scoring import EpsFn, Loss, noise_prediction_errors, timestep_grid

__all__ = [
    "Schedule",
    "SCHEDULES",
    "parse_schedule",
    "nested_order",
    "DCResult",
    "stagewise_probabilities",
    "pool_candidates",
    "classify",
    "hybrid_probabilities",
]


@dataclass(frozen=True)
class Schedule:
    """Successive elimination: after scoring on ``n_samples[s]`` timesteps keep the best ``to_keep[s]``."""

    n_samples: tuple[int, ...]
    to_keep: tuple[int, ...]

    def __post_init__(self) -> None:
        n, k = self.n_samples, self.to_keep
        if not n or len(n) != len(k):
            raise DiffclsError(f"n_samples and to_keep need the same, non-zero length; got {list(n)} and {list(k)}")
        if any(a >= b for a, b in zip(n, n[1:])) or n[0] < 1:
            raise DiffclsError(f"n_samples must increase strictly from at least 1; got {list(n)}")
        if any(a <= b for a, b in zip(k, k[1:])) or k[-1] != 1:
            raise DiffclsError(f"to_keep must decrease strictly to 1; got {list(k)}")

    @property
    def num_timesteps(self) -> int:
        """M = n_S, the size of the grid all stages draw from."""
        return self.n_samples[-1]

    def alive(self, num_classes: int) -> list[int]:
        """Classes scored at each stage: [K, min(k_1, K), ..., min(k_{S-1}, K)]."""
        return [num_classes] + [min(k, num_classes) for k in self.to_keep[:-1]]

    def nfe(self, num_classes: int, one_pass: bool = False) -> int:
        """Network evaluations per image, exact for nested grids; ``one_pass``: a network that scores every class
        in one evaluation (a multi-head UNet) costs one per timestep."""
        if one_pass:
            return self.num_timesteps
        new = np.diff((0,) + self.n_samples)
        return int(sum(a * d for a, d in zip(self.alive(num_classes), new)))

    def __str__(self) -> str:
        return f"n_samples {','.join(map(str, self.n_samples))} to_keep {','.join(map(str, self.to_keep))}"


# The paper's schedules (Table 6, the reference code's commands.md), by data set.
SCHEDULES: dict[str, Schedule] = {
    "cifar10": Schedule((50, 500), (5, 1)),
    "stl10": Schedule((100, 500), (5, 1)),
    "pets": Schedule((25, 250), (5, 1)),
    "food101": Schedule((20, 50, 100, 500), (20, 10, 5, 1)),
    "aircraft": Schedule((20, 50, 100, 500), (20, 10, 5, 1)),
    "flowers102": Schedule((20, 50, 100, 500), (20, 10, 5, 1)),
    "imagenet": Schedule((50, 100, 500, 1000), (500, 50, 10, 1)),
    "objectnet": Schedule((50, 100, 500, 1000), (25, 10, 5, 1)),
}


def parse_schedule(n_samples: str | None = None, to_keep: str | None = None, preset: str | None = None) -> Schedule:
    """A schedule from ``--n-samples 50,500 --to-keep 5,1``, from a preset name, or ``flat-N`` (N timesteps, all
    classes, no elimination)."""
    if preset:
        if preset.startswith("flat-") and preset[5:].isdigit():
            return Schedule((int(preset[5:]),), (1,))
        if preset not in SCHEDULES:
            raise DiffclsError(f"unknown schedule {preset!r}; choose from {', '.join(SCHEDULES)} or flat-N")
        return SCHEDULES[preset]
    if not n_samples:
        raise DiffclsError("give a schedule preset or --n-samples (and --to-keep)")
    try:
        n = tuple(int(v) for v in n_samples.split(","))
        k = tuple(int(v) for v in to_keep.split(",")) if to_keep else (1,) * (len(n) == 1)
    except ValueError:
        raise DiffclsError(
            f"--n-samples and --to-keep take comma-separated integers; got {n_samples!r}, {to_keep!r}"
        ) from None
    return Schedule(n, k)


def nested_order(schedule: Schedule) -> np.ndarray:
    """A permutation of the grid indices 0..M-1 whose first n_s entries are stage s's timesteps.

    The first n_1 are evenly spaced (every (M // n_1)-th index from (M // n_1) // 2); each later index is the
    farthest from those already taken (the two ends count as mirrors, so ends fill last), which keeps every prefix
    close to evenly spaced. Equally far candidates come up in rounds (one per gap of equal size); within a round
    the next index is the tied candidate farthest from those taken in that round (then the lowest), so a stage
    that fills only part of a round spreads its points over the whole range instead of filling the gaps from the
    low end (that rule left the middle stages of the 4-stage schedules at a mean t of 416-434 instead of 500).
    """
    m, n1 = schedule.num_timesteps, schedule.n_samples[0]
    stride = m // n1
    first = np.arange(stride // 2, m, stride)[:n1]
    order = list(first)
    index = np.arange(m)
    dist = np.abs(index[:, None] - first[None, :]).min(1).astype(float)
    bound = np.minimum(2 * index + 1, 2 * (m - index) - 1)  # distance to the mirror of the point about each end
    level, in_round = None, np.full(m, np.inf)  # distance to the points taken in the current round
    for _ in range(m - n1):
        score = np.minimum(dist, bound)
        score[order] = -1
        if score.max() != level:  # a new round: gaps of a smaller size
            level, in_round = score.max(), np.full(m, np.inf)
        tied = np.flatnonzero(score == level)
        new = int(tied[np.argmax(in_round[tied])])  # argmax: the lowest index among equally far
        order.append(new)
        dist = np.minimum(dist, np.abs(index - new))
        in_round = np.minimum(in_round, np.abs(index - new))
    return np.asarray(order)


@dataclass
class DCResult:
    """What ``classify`` returns for a batch of B images and K classes.

    errors: float32[B, K, M] error of class k at grid timestep m, NaN where it was not scored.
    prediction: int64[B], the survivor of the last stage.
    nfe: network evaluations per image (the same for every image).
    """

    errors: Tensor
    prediction: Tensor
    nfe: int
    schedule: Schedule
    order: np.ndarray

    def mean_errors(self) -> Tensor:
        """float32[B, K]: each class's mean error over the timesteps it was scored on."""
        return self.errors.nanmean(-1)

    def stage_means(self) -> Tensor:
        """float32[B, S, K]: mean error of each class over stage s's n_s timesteps; NaN if it was not alive at s."""
        return torch.stack(
            [
                self.errors[:, :, torch.as_tensor(self.order[:n], device=self.errors.device)].mean(-1)
                for n in self.schedule.n_samples
            ],
            1,
        )

    def probabilities(self, temperature: float = 1.0) -> Tensor:
        """float32[B, K], stage by stage (module docstring) with logits -temperature * mean error."""
        return stagewise_probabilities(self.stage_means(), temperature).float()


def stagewise_probabilities(stage_means: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Class probabilities float64[B, K] from the stage means float[B, S, K] of successive elimination.

    At stage s the classes alive (finite means) share the mass left to them by softmax(-temperature * mean); the
    classes that do not reach stage s + 1 keep their part. ``temperature`` may be a tensor that requires grad.
    """
    means = stage_means.double()
    num_stages = means.shape[1]
    probs = torch.zeros_like(means[:, 0])
    share = torch.ones_like(probs[:, :1])
    for s in range(num_stages):
        alive = ~means[:, s].isnan()
        logits = (-temperature * means[:, s].nan_to_num(0.0)).masked_fill(~alive, float("-inf"))
        p = share * logits.softmax(-1)
        survives = ~means[:, s + 1].isnan() if s + 1 < num_stages else torch.zeros_like(alive)
        probs = torch.where(alive & ~survives, p, probs)
        share = (p * survives).sum(-1, keepdim=True)
    return probs


def pool_candidates(probs: Tensor, candidate_classes: Tensor | None, num_classes: int | None = None) -> Tensor:
    """Class probabilities [B, K] from candidate probabilities [B, P]: the sum over each class's candidates
    (several prompts per class). ``candidate_classes`` int64[P]; None: candidates are the classes."""
    if candidate_classes is None:
        return probs
    num_classes = num_classes or int(candidate_classes.max()) + 1
    pooled = probs.new_zeros(len(probs), num_classes)
    return pooled.index_add(1, candidate_classes.to(probs.device), probs)


def classify(
    eps_fn: EpsFn,
    x0: Tensor,
    num_classes: int,
    alphas_cumprod: Tensor,
    schedule: Schedule,
    noise: Tensor,
    *,
    loss: Loss = "l2",
    batch_size: int = 256,
    candidates: Tensor | None = None,
) -> DCResult:
    """Classify a batch by successive elimination.

    Args:
        eps_fn: the noise predictor ``eps_fn(x_t, t, class_labels) -> eps_hat``.
        x0: float[B, C, H, W], images or latents as the model was trained on them.
        num_classes: K; candidates are 0..K-1.
        alphas_cumprod: float[T] of the model's scheduler.
        schedule: stages of elimination; a one-stage schedule (M,), (1,) scores every class on M timesteps.
        noise: float[M, C, H, W] (one bank for every image) or float[B, M, C, H, W]; noise m goes with grid
            timestep m.
        candidates: int64[B, P], the classes each image starts with (a proposer's top-P, the hybrid readout);
            None: all K. Classes outside stay NaN in ``errors`` (never scored), so NFE = ``schedule.nfe(P)``.
    """
    num_images = len(x0)
    grid = timestep_grid(schedule.num_timesteps, len(alphas_cumprod)).to(x0.device)
    if noise.dim() == x0.dim():
        noise = noise[None].expand(num_images, *noise.shape)
    order = nested_order(schedule)
    errors = torch.full((num_images, num_classes, schedule.num_timesteps), float("nan"), device=x0.device)
    if candidates is None:
        alive = torch.arange(num_classes, device=x0.device).expand(num_images, -1)  # [B, A]
    else:
        alive = candidates.to(x0.device).long()
    done = 0
    rows = torch.arange(num_images, device=x0.device)[:, None]
    for n, keep in zip(schedule.n_samples, schedule.to_keep):
        new = torch.as_tensor(order[done:n], device=x0.device)
        errors[rows[:, :, None], alive[:, :, None], new.view(1, 1, -1)] = noise_prediction_errors(
            eps_fn, x0, alive, grid[new], noise[:, new], alphas_cumprod, loss=loss, batch_size=batch_size
        )
        done = n
        mean = errors[rows, alive][:, :, torch.as_tensor(order[:n], device=x0.device)].mean(-1)  # [B, A]
        best = mean.argsort(dim=1, stable=True)[:, : min(keep, alive.shape[1])]
        alive = alive.gather(1, best)
    scored = num_classes if candidates is None else candidates.shape[1]
    return DCResult(errors, alive[:, 0], schedule.nfe(scored, scores_all_classes(eps_fn)), schedule, order)


def hybrid_probabilities(proposer_probs: Tensor, dc_probs: Tensor, candidates: Tensor) -> Tensor:
    """The hybrid readout's probabilities float64[B, K]: the proposer keeps the mass of the classes it did not
    propose; the mass of its top-P (``candidates`` int64[B, P]) is split among them by the Diffusion Classifier's
    probabilities ``dc_probs`` float[B, K] (zero outside the candidates). Rows sum to 1, and the class that
    survives elimination has at least the probability of any class left out (it gets at least 1/P of a mass no
    smaller than P times the smallest proposed probability)."""
    proposer = proposer_probs.double()
    proposed = torch.zeros_like(proposer, dtype=torch.bool).scatter(1, candidates.to(proposer.device), True)
    mass = (proposer * proposed).sum(1, keepdim=True)
    dc = dc_probs.double() * proposed
    dc = dc / dc.sum(1, keepdim=True).clamp_min(1e-300)
    return torch.where(proposed, mass * dc, proposer)

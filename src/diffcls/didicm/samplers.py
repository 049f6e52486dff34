"""DiDiCM samplers: reverse the uniform label process to classify an image.

Every sampler takes the network as ``score_fn(c_t, sigma) -> log_score`` with the
image already bound: ``c_t`` LongTensor (N,), ``sigma`` float32 (N,), output (N, K)
raw log concrete scores log p_sigma(j|y)/p_sigma(c_t|y). The c_t column is ignored
(set to log-ratio 0 here). Signatures follow k-diffusion: ``callback`` is called after
each step with a dict and ``disable`` hides the tqdm bar. Probability updates run in
float64 (O(B K), negligible next to the network); results are float32.

Time grid (as the reference code): t_i = linspace(1, eps, steps) with the fixed step
dt = (1 - eps) / steps, and no final denoising step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import trange

from .noise import LogLinearNoise, Noise
from .process import LOG_SCORE_CLAMP, UniformProcess, mask_reference, sample_categorical

__all__ = [
    "ScoreFn",
    "CP_UPDATES",
    "CPUpdate",
    "time_grid",
    "repeat_for_chains",
    "cp_sample",
    "break_top_ties",
    "cl_sample",
    "onepass_readout",
    "SamplerConfig",
    "SamplerSpec",
    "SAMPLERS",
    "get_sampler",
    "nfe_per_image",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]

CPUpdate = Literal["euler", "euler-lower", "euler-tiebreak", "analytic"]
CP_UPDATES: dict[str, str] = {
    "euler": "the paper's Euler step: clamp p to [0, 1], renormalise (the reference; can end in exact ties)",
    "euler-lower": "Euler step clamped only below 0, then renormalised (no exact ties from the clamp)",
    "euler-tiebreak": "the reference Euler step; final exact ties at the top ordered by p before the last step",
    "analytic": "exact Tweedie step of the uniform process (denoise to p0, re-noise to the next sigma)",
}
"""The valid ``update`` values of :func:`cp_sample` (``SamplerConfig.cp_update``), with one line each for --help."""


def time_grid(steps: int, eps: float = 1e-5, device: torch.device | None = None) -> tuple[Tensor, float]:
    """Times t (steps,) from 1 down to eps, float64, and the fixed step dt = (1 - eps)/steps."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return torch.linspace(1.0, eps, steps, dtype=torch.float64, device=device), (1.0 - eps) / steps


def repeat_for_chains(x: Tensor, chains: int) -> Tensor:
    """Lay out a per-image tensor (B, ...) for ``cl_sample``: row b * chains + n is chain n of image b."""
    return x.repeat_interleave(chains, dim=0)


def _device(device: torch.device | str | None, generator: torch.Generator | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _log_scores(score_fn: ScoreFn, c: Tensor, sigma: Tensor) -> Tensor:
    """One network call -> float64 (N, K) log-ratios, clamped, with the c column at 0."""
    sigma_vec = torch.full(c.shape, float(sigma), device=c.device)
    out = score_fn(c, sigma_vec).double().clamp(-LOG_SCORE_CLAMP, LOG_SCORE_CLAMP)
    return mask_reference(out, c)


def _record(trajectory: list[Tensor] | None, p: Tensor) -> None:
    if trajectory is not None:
        trajectory.append(p.detach().float().cpu())


def _euler_step(p: Tensor, pi: Tensor, rate: Tensor, process: UniformProcess, clamp_max: float | None) -> Tensor:
    """p + rate (R p) (B, K), clamped to [0, clamp_max] (None: below only), rows renormalised.

    The upper clamp is the reference's. In the last steps rate ~ 1/sigma is huge, so every class with
    p_j / pi_j well above the rest overshoots 1; clamping them all to 1 leaves them exactly tied.
    Clamping only below keeps their relative sizes (the row sum is >= 1, as R p sums to 0).
    """
    p = (p + rate * process.reverse_rate_matvec(p, pi)).clamp(0.0, clamp_max)
    return p / p.sum(-1, keepdim=True)


def break_top_ties(p: Tensor, p_prev: Tensor) -> Tensor:
    """Order the exact ties at the top of each row of ``p`` (B, K) float32 by ``p_prev`` (B, K), the p before the
    last step (then by class index), so argmax picks the tied class that led before the last step.

    The classes sharing a row's maximum keep their order by ``p_prev``: the one of rank r among them (0 = largest
    ``p_prev``) is moved r float32 ulps down (one ulp is the smallest step float32 holds, so a smaller nudge would
    round back into the tie). The leader keeps its value; an entry moves by at most (ties - 1) ulps of 1/ties,
    i.e. < 1.2e-7 in absolute terms whatever K. Rows without a tie, and all other entries, are unchanged.
    """
    top = p == p.amax(-1, keepdim=True)  # (B, K); p > 0 there, since rows sum to 1
    order = torch.where(top, p_prev, -torch.inf).argsort(dim=-1, descending=True, stable=True)
    rank = torch.where(top, order.argsort(-1), 0).to(torch.int32)
    # Positive float32 values are ordered like their bit patterns, so bits - r is r ulps lower.
    return (p.contiguous().view(torch.int32) - rank).view(torch.float32)


def _pick_reference(p: Tensor, reference: str, generator: torch.Generator | None) -> Tensor:
    if reference == "min":
        return p.argmin(-1)
    if reference == "max":
        return p.argmax(-1)
    if reference == "random":
        return sample_categorical(p, generator)
    raise ValueError(f"unknown reference {reference!r}")


@torch.no_grad()
def cp_sample(
    score_fn: ScoreFn,
    batch_size: int,
    num_classes: int,
    steps: int,
    *,
    reference: Literal["min", "max", "random"] = "min",
    update: CPUpdate = "euler",
    noise: Noise | None = None,
    eps: float = 1e-5,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    trajectory: list[Tensor] | None = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DiDiCM-CP: evolve class probabilities p (B, K) from uniform; one network call per step.

    At t_i the network, fed the reference label c (argmin/argmax/sample of p), gives
    pi = softmax(s), the estimate of p_sigma(.|y). Updates:
      * ``"euler"`` (paper, the reference): p <- clip((I + dt sigma' R) p) to [0, 1], renormalised, with
        the O(K) form of R p from :meth:`UniformProcess.reverse_rate_matvec`. At the last step
        (sigma ~ eps) the classes that overshoot 1 are all clamped to 1, so rows can end in exact ties,
        which argmax breaks by class index.
      * ``"euler-lower"``: the same step clamped only below 0 (then renormalised): no ties from the clamp.
      * ``"euler-tiebreak"``: ``"euler"``, then the exact ties at the top of the final p are ordered by
        the p before the last step (:func:`break_top_ties`; entries move by < 1.2e-7).
      * ``"analytic"``: the exact reverse of the uniform kernel. Denoise pi to
        p0 = (pi - (1 - e^{-sigma})/K) e^{sigma} (clamped, renormalised) and re-noise it to the
        next grid sigma (0 after the last point), so the output is the p0 estimate at
        t = eps. With the exact score this returns p0 for any number of steps; the
        earlier steps only steer which reference label is fed to the network.

    Args:
        score_fn: network, see module docstring; called with batch ``batch_size``.
        device: where labels are created (default: the generator's device, else CPU).
        trajectory: if a list, receives a CPU copy of p (B, K) first and after each step.
        callback: called as ``callback({"step", "t", "sigma", "p"})`` after each step.
    Returns:
        (B, K) float32 class probabilities.
    """
    if update not in CP_UPDATES:
        raise ValueError(f"unknown update {update!r}; choose from {', '.join(CP_UPDATES)}")
    noise = noise if noise is not None else LogLinearNoise()
    device = _device(device, generator)
    process = UniformProcess(num_classes)
    ts, dt = time_grid(steps, eps, device)
    sigmas, dsigmas = noise(ts)
    p = torch.full((batch_size, num_classes), 1.0 / num_classes, dtype=torch.float64, device=device)
    _record(trajectory, p)
    for i in trange(steps, disable=disable):
        c = _pick_reference(p, reference, generator)
        pi = torch.softmax(_log_scores(score_fn, c, sigmas[i]), dim=-1)
        p_prev = p  # euler-tiebreak orders the last step's ties by it
        if update == "analytic":
            sigma_next = sigmas[i + 1] if i + 1 < steps else 0.0
            p = process.reverse_marginal(pi, sigmas[i], sigma_next)
        else:
            p = _euler_step(p, pi, dt * dsigmas[i], process, None if update == "euler-lower" else 1.0)
        if update == "euler-tiebreak" and i + 1 == steps:
            p = break_top_ties(p.float(), p_prev).double()  # on the float32 values returned
        _record(trajectory, p)
        if callback is not None:
            callback({"step": i, "t": ts[i].item(), "sigma": sigmas[i].item(), "p": p})
    return p.float()


def trajectory_wander(trajectory: list[Tensor]) -> Tensor:
    """How much a sampler changes its mind on the way: the path length of its distributions p_0 .. p_S (each
    (B, K)) in total variation minus the distance it covers, Σ_s TV(p_s, p_{s+1}) − TV(p_0, p_S) ≥ 0 (float64[B]).

    0 for a path that heads straight for its answer (CP moving mass from uniform onto one class); it grows when
    mass moves to a class and back (CP's reference label flips, CL's chains jump back and forth).
    """
    if len(trajectory) < 2:
        return torch.zeros(len(trajectory[0]) if trajectory else 0, dtype=torch.float64)
    path = torch.stack(trajectory).double()  # (S + 1, B, K)
    tv = lambda a, b: 0.5 * (a - b).abs().sum(-1)  # noqa: E731
    return (tv(path[1:], path[:-1]).sum(0) - tv(path[-1], path[0])).clamp_min(0.0)


def _histogram(c: Tensor, batch_size: int, chains: int, num_classes: int) -> Tensor:
    return F.one_hot(c, num_classes).view(batch_size, chains, num_classes).double().mean(1)


@torch.no_grad()
def cl_sample(
    score_fn: ScoreFn,
    batch_size: int,
    num_classes: int,
    steps: int,
    *,
    chains: int = 10,
    noise: Noise | None = None,
    eps: float = 1e-5,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    trajectory: list[Tensor] | None = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DiDiCM-CL: ``chains`` label chains per image (SEDD Euler predictor); histogram of final labels.

    Chain layout: ``score_fn`` is called with N = batch_size * chains rows, and row
    ``b * chains + n`` is chain n of image b, so bind images with
    ``repeat_for_chains(images, chains)`` (= ``repeat_interleave``). From c, the jump
    weight to j != c is dt sigma' exp(s_j) / K, the stay weight 1 - their sum
    (clamped at 0); the next label is drawn in proportion to these weights.

    Args:
        score_fn: network, called once per step with N rows.
        trajectory: if a list, receives the label histograms (B, K) first and after each step.
        callback: called as ``callback({"step", "t", "sigma", "p", "labels"})`` after each step.
    Returns:
        (B, K) float32 fraction of chains ending in each class.
    """
    noise = noise if noise is not None else LogLinearNoise()
    device = _device(device, generator)
    ts, dt = time_grid(steps, eps, device)
    sigmas, dsigmas = noise(ts)
    c = torch.randint(num_classes, (batch_size * chains,), generator=generator, device=device)
    _record(trajectory, _histogram(c, batch_size, chains, num_classes))
    for i in trange(steps, disable=disable):
        rates = _log_scores(score_fn, c, sigmas[i]).exp() * (dt * dsigmas[i] / num_classes)
        rates = mask_reference(rates, c)  # exp(0) at c is not a jump
        stay = (1.0 - rates.sum(-1, keepdim=True)).clamp_min(0.0)
        c = sample_categorical(rates.scatter(-1, c.unsqueeze(-1), stay), generator)
        hist = _histogram(c, batch_size, chains, num_classes)
        _record(trajectory, hist)
        if callback is not None:
            callback({"step": i, "t": ts[i].item(), "sigma": sigmas[i].item(), "p": hist, "labels": c})
    return _histogram(c, batch_size, chains, num_classes).float()


@torch.no_grad()
def onepass_readout(
    score_fn: ScoreFn,
    batch_size: int,
    num_classes: int,
    steps: int = 1,
    *,
    sigma: float = 1e-4,
    reference: int = 0,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    trajectory: list[Tensor] | None = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """One network call at small ``sigma``: softmax of the log-scores (reference column at 0).

    An ablation: it reads p_sigma(.|y) ~ p0(.|y) directly, without diffusion steps.
    ``steps`` is ignored (kept for a uniform registry call); ``generator``/``disable``
    are accepted for the same reason.

    Returns:
        (B, K) float32 class probabilities.
    """
    device = _device(device, generator)
    c = torch.full((batch_size,), reference, dtype=torch.long, device=device)
    p = torch.softmax(_log_scores(score_fn, c, torch.tensor(sigma)), dim=-1)
    _record(trajectory, p)
    if callback is not None:
        callback({"step": 0, "t": float("nan"), "sigma": sigma, "p": p})
    return p.float()


# ------------------------------------------------------------------------------------------ sampler description


@dataclass(frozen=True)
class SamplerConfig:
    """How DiDiCM turns scores into probabilities: a sampler name from :data:`SAMPLERS` and its options (each
    sampler reads the options it needs; see :meth:`SamplerSpec.options`).

    The library's default CP step is ``euler-lower``, chosen on the validation splits of mnist5k and
    Fashion-MNIST (docs/protocols.md): at 8 steps it matched or beat the reference ``euler`` in top-1, NLL and
    ECE on both, and with an exact score it never ends in the reference's exact ties. :func:`cp_sample` itself
    keeps the paper's step as its default, and ``cp_update="euler"`` is the reference readout.
    """

    sampler: str = "cp"
    steps: int = 8
    chains: int = 10
    cp_update: CPUpdate = "euler-lower"
    cp_reference: Literal["min", "max", "random"] = "min"

    @property
    def spec(self) -> SamplerSpec:
        return get_sampler(self.sampler)

    def nfe(self) -> int:
        """Network evaluations per image."""
        return self.spec.nfe(self)

    @property
    def label(self) -> str:
        """Display name for tables and plots, e.g. ``CP-8``, ``CP-8 analytic``, ``CP-8 tie-break``, ``CL 10×8``,
        ``one-pass``."""
        return self.spec.label(self)

    @property
    def key(self) -> str:
        """A short id of the readout and the options it reads, e.g. ``cp-euler-8``, ``cp-euler-tiebreak-8``,
        ``cl-10x8``, ``onepass``."""
        return self.spec.key(self)

    def fields(self) -> dict:
        """``sampler``, ``cp_update``, ``steps``, ``chains``: None where the sampler does not read one."""
        read = self.spec.options
        return {
            "sampler": self.sampler,
            "cp_update": self.cp_update if "cp_update" in read else None,
            "steps": self.steps if "steps" in read else None,
            "chains": self.chains if "chains" in read else None,
        }

    @classmethod
    def from_fields(cls, fields: dict) -> SamplerConfig:
        """The inverse of :meth:`fields` (a results row's fields); options a sampler does not read take defaults."""
        given = {k: fields[k] for k in ("sampler", "cp_update", "steps", "chains") if fields.get(k) is not None}
        return cls(**given)


class SamplerSpec:
    """One DiDiCM readout, described once for every consumer: the sampler function (k-diffusion's signature
    ``fn(score_fn, batch_size, num_classes, steps, **options)``), the options it reads, its NFE, its labels for
    results, tables and plots, and the configurations it contributes to an NFE sweep. A new readout is one
    subclass registered in :data:`SAMPLERS`; the CLI, evaluation, the benchmark and its plots read it from there.
    """

    name: str
    summary: str  # one line for --help
    options: tuple[str, ...] = ()  # the SamplerConfig fields it reads
    marker: str = "o"  # its points in the NFE plot
    line: str | None = "-"  # how those points are joined (None: not joined)
    native_scores: tuple[str, ...] = ()  # its own uncertainty scores for OOD detection (trajectory_scores)

    def __call__(self, score_fn: ScoreFn, batch_size: int, num_classes: int, steps: int = 1, **kwargs) -> Tensor:
        return type(self).fn(score_fn, batch_size, num_classes, steps, **kwargs)

    def kwargs(self, config: SamplerConfig) -> dict:
        """Keyword arguments of ``fn`` for ``config`` (besides the score function, batch size and K)."""
        return {}

    def nfe(self, config: SamplerConfig) -> int:
        return 1

    def rows_per_image(self, config: SamplerConfig) -> int:
        """Network rows per image in one call (CL runs its chains side by side)."""
        return 1

    def label(self, config: SamplerConfig) -> str:
        return self.name

    def key(self, config: SamplerConfig) -> str:
        return self.name

    def plot_group(self, config: SamplerConfig) -> str:
        """The legend entry of ``config``'s point in the NFE plot (points of one group are joined by ``line``)."""
        return self.label(config)

    def sweep(self, steps: tuple[int, ...], chains_steps: tuple[tuple[int, int], ...]) -> list[SamplerConfig]:
        """Its configurations in an NFE sweep over ``steps`` (and ``(chains, steps)`` pairs for chain samplers)."""
        return [SamplerConfig(self.name)]

    def trajectory_scores(self, trajectory: list[Tensor]) -> dict[str, Tensor]:
        """Its :attr:`native_scores` ``{name: float64[B]}`` (higher = more likely out of distribution) from the
        trajectory ``fn`` recorded: the (B, K) distributions at the start and after every step."""
        return {"wander": trajectory_wander(trajectory)} if "wander" in self.native_scores else {}


_CP_LABELS = {"euler": "", "euler-lower": " lower-clamp", "euler-tiebreak": " tie-break", "analytic": " analytic"}


class CPSampler(SamplerSpec):
    name = "cp"
    summary = "diffusion over class probabilities (DiDiCM-CP)"
    options = ("steps", "cp_update", "cp_reference")
    fn = staticmethod(cp_sample)
    native_scores = ("wander",)

    def kwargs(self, config):
        return {"steps": config.steps, "update": config.cp_update, "reference": config.cp_reference}

    def nfe(self, config):
        return config.steps

    def label(self, config):
        return f"CP-{config.steps}{_CP_LABELS[config.cp_update]}"

    def key(self, config):
        return f"cp-{config.cp_update}-{config.steps}"

    def plot_group(self, config):
        return "CP" + (_CP_LABELS[config.cp_update] or " euler")  # CP euler, CP analytic, CP lower-clamp, ...

    def sweep(self, steps, chains_steps):
        # the reference and the exact step; the tie-free Euler variants are opt-in (benchmarks/cp_ties.py)
        return [SamplerConfig("cp", steps=k, cp_update=u) for u in ("euler", "analytic") for k in steps]


class CLSampler(SamplerSpec):
    name = "cl"
    summary = "diffusion over sampled labels, a histogram of chains (DiDiCM-CL)"
    options = ("steps", "chains")
    marker, line = "^", None
    fn = staticmethod(cl_sample)
    native_scores = ("wander",)

    def kwargs(self, config):
        return {"steps": config.steps, "chains": config.chains}

    def nfe(self, config):
        return config.chains * config.steps

    def rows_per_image(self, config):
        return config.chains

    def label(self, config):
        return f"CL {config.chains}×{config.steps}"

    def key(self, config):
        return f"cl-{config.chains}x{config.steps}"

    def plot_group(self, config):
        return "CL (chains × steps)"

    def sweep(self, steps, chains_steps):
        return [SamplerConfig("cl", steps=k, chains=n) for n, k in chains_steps]


class OnePassReadout(SamplerSpec):
    name = "onepass"
    summary = "one network call at a small noise level (no diffusion steps)"
    marker, line = "*", None
    fn = staticmethod(onepass_readout)  # no steps, so no native score

    def label(self, config):
        return "one-pass"


SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in (CPSampler(), CLSampler(), OnePassReadout())}


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def nfe_per_image(sampler: str, steps: int, chains: int = 1) -> int:
    """Network evaluations per image: cp -> steps, cl -> chains * steps, onepass -> 1."""
    return get_sampler(sampler).nfe(SamplerConfig(sampler, steps=steps, chains=chains))

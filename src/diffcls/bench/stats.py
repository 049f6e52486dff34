"""Statistics over a benchmark's rows: the numbers every table cell and plot point shows.

Every number is a statistic over training seeds: for each seed, the mean over the conditions a cell covers
(e.g. all noise corruptions at severity 3), then mean ± std across seeds (only seeds that cover every condition
of the cell count). A gain Δ is one series minus another (the compared contender minus the baseline, see
:class:`~diffcls.bench.contenders.Lineup`), paired by seed: the mean ± std over seeds of the per-seed
difference. A gain is *beyond the seed spread* when, with at least 3 seeds, the two models' per-seed accuracies
do not overlap at all (every seed of one above every seed of the other; with 3 seeds each, chance alone does
that with probability 2/20 = 0.1); with fewer seeds it is not judged ("n/a").

Beside it, a *paired bootstrap* interval over test images (:func:`bootstrap_gain`): within each seed, the test
images are resampled with replacement (the same draw for both models and for every condition of the cell, so
the pairing and the correlation across corruptions of one image are kept), the seed's gain is recomputed, and
the resampled gains are averaged across seeds; the 2.5th and 97.5th percentiles of 1,000 resamples make the
95% interval. It measures the uncertainty from the finite test set at these trained models, not from training
(which the seed spread shows).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from diffcls.data.corruptions import FAMILY_NAMES
from diffcls.didicm import SAMPLERS, SamplerConfig
from diffcls.inference.metrics import ECE_BINS

Row = dict
"""One results row (see :func:`diffcls.bench.runner.result_row`)."""
Predicate = Callable[[Row], bool]

MIN_SEEDS_FOR_SPREAD = 3
BOOTSTRAP_RESAMPLES = 1000
RISK_COVERAGE_POINTS = 20  # a row's risk-coverage curve: the risk at coverage 5%, 10%, ..., 100%


@dataclass(frozen=True)
class Series:
    """A contender read out one way: what a table column or a plot line shows."""

    contender: str  # the contender's key
    readout: str  # the rows' ``readout`` label
    label: str

    def matches(self, row: Row) -> bool:
        return row["contender"] == self.contender and row["readout"] == self.readout


@dataclass(frozen=True)
class Curve:
    """The per-epoch metrics of one trained model (its ``metrics.csv``): the report's training curves."""

    name: str  # the model folder's name
    contender: str  # the contender's key
    rows: list[dict]  # {"epoch", "train_loss", "val_top1", "seconds", ...} as floats
    full_data: bool = True  # a model of the full training data at the data's size (not a fraction, not low res)


def per_seed(rows: list[Row], series: Series, where: Predicate, metric: str = "top1") -> dict[int, float]:
    """``{seed: mean of metric over the matching rows}`` for one series, over the seeds that cover every matching
    condition (a seed evaluated on fewer conditions, e.g. only in the NFE sweep, would average something else)."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        if series.matches(r) and where(r) and r.get(metric) is not None:  # rows of older versions may lack one
            by_seed.setdefault(r["seed"], {})[r["condition"]] = r[metric]
    complete = max((len(v) for v in by_seed.values()), default=0)
    return {s: statistics.fmean(v.values()) for s, v in by_seed.items() if len(v) == complete}


def mean_std(values: Iterable[float]) -> tuple[float, float, int] | None:
    """(mean, sample std, count) of the values; None for none."""
    values = list(values)
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def seed_stat(rows: list[Row], series: Series, where: Predicate, metric: str = "top1") -> tuple | None:
    """Mean ± std over seeds of one series' per-seed means: a table cell."""
    return mean_std(per_seed(rows, series, where, metric).values())


def gain(rows: list[Row], base: Series, new: Series, where: Predicate) -> tuple[tuple | None, str]:
    """Paired gain ``new − base``: (mean, std, seeds) of the per-seed differences, and whether the two models'
    per-seed values do not overlap ("yes"/"no"; "n/a" under ``MIN_SEEDS_FOR_SPREAD`` seeds)."""
    a, b = per_seed(rows, base, where), per_seed(rows, new, where)
    seeds = sorted(set(a) & set(b))
    stat = mean_std(b[s] - a[s] for s in seeds)
    if len(seeds) < MIN_SEEDS_FOR_SPREAD:
        return stat, "n/a"
    va, vb = [a[s] for s in seeds], [b[s] for s in seeds]
    return stat, "yes" if min(vb) > max(va) or max(vb) < min(va) else "no"


def bootstrap_gain(
    rows: list[Row], base: Series, new: Series, where: Predicate, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """95% paired-bootstrap interval of the top-1 gain ``new − base`` over test images (see the module docstring),
    from the rows' per-image ``correct`` strings; None when no seed has both models on the same images for every
    matching condition (rows of older versions have no ``correct``)."""
    differences = []  # per seed: mean over conditions of new − base correctness, per image
    for s in sorted({r["seed"] for r in rows if new.matches(r) and where(r)}):
        pairs = _paired_outcomes(rows, base, new, where, s)
        if pairs:
            differences.append(np.mean([n - b for b, n in pairs], axis=0))
    if not differences:
        return None
    rng = np.random.default_rng(seed)
    gains = np.zeros(resamples)
    for d in differences:
        gains += d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    gains /= len(differences)
    low, high = np.percentile(gains, [2.5, 97.5])
    return float(low), float(high)


def _paired_outcomes(rows: list[Row], base: Series, new: Series, where: Predicate, seed: int) -> list:
    """``[(base correct, new correct), ...]`` as 0/1 arrays, one pair per condition both have at ``seed`` on the
    same number of images; [] if any matching condition lacks a pair."""
    found: dict[str, list] = {}
    for r in rows:
        if r["seed"] == seed and where(r) and (base.matches(r) or new.matches(r)):
            found.setdefault(r["condition"], [None, None])[0 if base.matches(r) else 1] = r.get("correct")
    pairs = []
    for b, n in found.values():
        if b is None or n is None or len(b) != len(n):
            return []
        pairs.append((_outcomes(b), _outcomes(n)))
    return pairs


def _outcomes(correct: str) -> np.ndarray:
    """A row's per-image outcomes ``"0110…"`` as ``int64[N]`` of 0/1: signed, so that differences can be −1 (in
    uint8, 0 − 1 wraps to 255)."""
    return np.frombuffer(correct.encode(), np.uint8).astype(np.int64) - ord("0")


def relative_corruption_error(rows: list[Row], series: Series, reference: Series) -> float | None:
    """Corruption error relative to a reference model: the mean over corruptions c of Σ_s E(c, s) / Σ_s E_ref(c, s),
    E = 1 − top-1 (mean over seeds), over the severities both have. Hendrycks & Dietterich's CE with the reference
    in AlexNet's place (here the plain ResNet), so not comparable with ImageNet's mCE. None without corruptions
    or a reference row (or a reference that never errs)."""
    ratios = []
    for name in sorted({r["corruption"] for r in rows if r["kind"] == "corruption"}):
        errors = []
        for s in (series, reference):
            by_severity: dict[int, list[float]] = {}
            for r in rows:
                if s.matches(r) and r["kind"] == "corruption" and r["corruption"] == name:
                    by_severity.setdefault(r["severity"], []).append(1 - r["top1"])
            errors.append({k: statistics.fmean(v) for k, v in by_severity.items()})
        common = set(errors[0]) & set(errors[1])
        reference_error = sum(errors[1][k] for k in common)
        if common and reference_error > 0:
            ratios.append(sum(errors[0][k] for k in common) / reference_error)
    return statistics.fmean(ratios) if ratios else None


def pooled_bins(rows: list[Row], bins_key: str = "reliability") -> dict[str, list]:
    """The rows' reliability bins (``bins_key``) summed: counts, confidence and correct per bin over all their
    images."""
    pooled = {"count": [0] * ECE_BINS, "confidence": [0.0] * ECE_BINS, "correct": [0.0] * ECE_BINS}
    for r in rows:
        for key in pooled:
            pooled[key] = [a + b for a, b in zip(pooled[key], r[bins_key][key])]
    return pooled


# ------------------------------------------------------------------------------------------------ condition groups


def is_clean(r: Row) -> bool:
    return r["kind"] == "clean"


def worst_severity(rows: list[Row]) -> int | None:
    """The highest corruption severity among the rows (None without corruptions)."""
    return max((r["severity"] for r in rows if r["kind"] == "corruption"), default=None)


def at_severity(severity: int) -> Predicate:
    """Rows of any corruption at ``severity``."""
    return lambda r: r["kind"] == "corruption" and r["severity"] == severity


def condition_groups(rows: list[Row]) -> dict[str, list[tuple[str, Predicate]]]:
    """The report's groups of conditions, each a list of (label, predicate)."""
    severities = sorted({r["severity"] for r in rows if r["kind"] == "corruption"})
    families = [f for f in FAMILY_NAMES if any(r.get("family") == f for r in rows)]
    names = sorted(
        {r["corruption"] for r in rows if r["kind"] == "corruption"},
        key=lambda n: (FAMILY_NAMES.index(_family(rows, n)), n),
    )

    def corr(sev=None, fam=None, name=None) -> Predicate:
        return lambda r: (
            r["kind"] == "corruption"
            and (sev is None or r["severity"] == sev)
            and (fam is None or r["family"] == fam)
            and (name is None or r["corruption"] == name)
        )

    clean_label = ("clean", is_clean)
    everything = f"all {len(names)}" if len(names) > 1 else "all"
    return {
        "severity": [clean_label] + [(f"{everything}, severity {s}", corr(sev=s)) for s in severities],
        "family": [(f"{f}, severity {s}", corr(sev=s, fam=f)) for f in families for s in severities]
        + [(f"{f}, mean", corr(fam=f)) for f in families],
        "corruption": [(n, corr(name=n)) for n in names],
        **{kind: _fraction_group(rows, kind) for kind in ("data_ratio", "data_ratio_eq")},
        **{kind: _resolution_group(rows, kind) for kind in ("low_res", "low_res_shift")},
    }


def _fraction_group(rows: list[Row], kind: str) -> list[tuple[str, Predicate]]:
    """Clean full data, then each training fraction of ``kind`` (``data_ratio`` or ``data_ratio_eq``)."""
    ratios = sorted({r["data_ratio"] for r in rows if r["kind"] == kind}, reverse=True)
    return [("100%", is_clean)] + [
        (percent(x), lambda row, x=x: row["kind"] == kind and row["data_ratio"] == x) for x in ratios
    ]


def _resolution_group(rows: list[Row], kind: str) -> list[tuple[str, Predicate]]:
    """Clean native size, then each resolution of ``kind`` (``low_res`` or ``low_res_shift``)."""
    resolutions = sorted({r["low_res"] for r in rows if r["kind"] == kind}, reverse=True)
    return [("native", is_clean)] + [
        (f"{x} px", lambda row, x=x: row["kind"] == kind and row["low_res"] == x) for x in resolutions
    ]


def percent(fraction: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:g}%"


def _family(rows: list[Row], name: str) -> str:
    return next(r["family"] for r in rows if r.get("corruption") == name)


# ------------------------------------------------------------------------------------------------------ NFE sweep


def sweep_rows(rows: list[Row], condition: str, seeds: Iterable[int]) -> list[Row]:
    """The rows of ``condition`` from the training seeds that ran the NFE sweep, so that every readout in its
    table and plot averages the same models."""
    seeds = set(seeds)
    return [r for r in rows if r["condition"] == condition and r["seed"] in seeds]


def sweep_conditions(rows: list[Row], preset) -> list[tuple[str, tuple[int, ...]]]:
    """(condition label, seeds) of ``preset``'s NFE sweep (a :class:`~diffcls.bench.grid.BenchPreset`), where one
    of its swept contenders has rows."""
    swept = {c.key for c in preset.lineup.swept}
    cells = [(condition.label, seeds) for condition, seeds in preset.sweep_cells()]
    return [
        (label, seeds) for label, seeds in cells if any(r["contender"] in swept for r in sweep_rows(rows, label, seeds))
    ]


def sampler_groups(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows read out by DiDiCM samplers, by the legend entry of their point in the NFE plot
    (``SamplerSpec.plot_group``): samplers in :data:`~diffcls.didicm.SAMPLERS` order, the groups of one sampler in
    the order the rows first show them, the rows of a group by NFE."""
    order = list(SAMPLERS)
    groups: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: order.index(r["sampler"])):  # stable: first appearance within a sampler
        config = SamplerConfig.from_fields(r)
        groups.setdefault(config.spec.plot_group(config), []).append(r)
    return {name: sorted(group, key=lambda r: r["nfe"]) for name, group in groups.items()}

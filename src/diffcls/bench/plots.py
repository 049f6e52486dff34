"""The benchmark's figures (matplotlib, imported when a figure is drawn): accuracy against severity, the gain Δ
against difficulty, accuracy against NFE, CP trajectories, reliability diagrams, risk-coverage curves, OOD score
histograms and training curves.

Lines and labels come from the lineup's series and contenders (:mod:`diffcls.bench.contenders`); the NFE plot
groups a swept contender's points by their sampler's ``plot_group`` and draws them with its marker and line.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from diffcls.bench.contenders import Lineup
from diffcls.bench.grid import BenchPreset
from diffcls.bench.stats import (
    RISK_COVERAGE_POINTS,
    Curve,
    Predicate,
    Row,
    Series,
    at_severity,
    condition_groups,
    gain,
    is_clean,
    pooled_bins,
    sampler_groups,
    seed_stat,
    sweep_conditions,
    sweep_rows,
    worst_severity,
)
from diffcls.data.corruptions import FAMILY_NAMES
from diffcls.didicm import SamplerConfig
from diffcls.inference.metrics import ECE_BINS, ece_from_bins


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")  # keeps suptitles and outside insets in the picture
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def _errorbars(ax, xs: list, stats: list, **style) -> None:
    """Mean ± std points at ``xs`` (a missing statistic leaves its point out)."""
    points = [(x, s) for x, s in zip(xs, stats) if s is not None]
    if points:
        ax.errorbar(
            [x for x, _ in points],
            [s[0] for _, s in points],
            yerr=[s[1] for _, s in points],
            marker="o",
            capsize=3,
            **style,
        )


def _plot_series(ax, xs: list, rows: list[Row], series: Series, wheres: list[Predicate]) -> None:
    _errorbars(ax, xs, [seed_stat(rows, series, w) for w in wheres], label=series.label, ms=4)


def plot_accuracy_vs_severity(rows: list[Row], path: Path, preset: BenchPreset | None = None) -> Path | None:
    severities = sorted({r["severity"] for r in rows if r["kind"] == "corruption"})
    families = [f for f in FAMILY_NAMES if any(r.get("family") == f for r in rows)]
    if not severities:
        return None
    plt = _pyplot()
    panels = families + ["all"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], panels):
        wheres = [is_clean] + [
            lambda r, s=s, f=family: (
                r["kind"] == "corruption" and r["severity"] == s and (f == "all" or r["family"] == f)
            )
            for s in severities
        ]
        for series in Lineup.of(preset).series(rows, preset):
            _plot_series(ax, [0, *severities], rows, series, wheres)
        ax.set_title(f"{family} corruptions" if family != "all" else "mean of all corruptions")
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks([0, *severities])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def plot_gain_vs_difficulty(rows: list[Row], path: Path, preset: BenchPreset | None = None) -> Path | None:
    """Δ (compared − baseline) against severity, data fraction, resolution, and against the baseline's error
    (Fig. 1/4a)."""
    lineup = Lineup.of(preset)
    pair = lineup.gain_pair(lineup.series(rows, preset))
    if not pair:
        return None
    base, new = pair
    delta = f"Δ top-1 ({lineup.compared.label} − {lineup.baseline.name})"
    plt = _pyplot()
    groups = condition_groups(rows)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    # One panel per axis of difficulty; a panel with two protocols draws both (the second dashed).
    panels = [
        ("corruption severity (0 = clean)", [("severity", None)]),
        ("training data fraction", [("data_ratio", "same epochs"), ("data_ratio_eq", "equal steps")]),
        ("input resolution", [("low_res", "train+test"), ("low_res_shift", "test-only view")]),
    ]
    for ax, (xlabel, protocols) in zip(axes, panels):
        ax.axhline(0, color="grey", lw=0.8)
        labels = list(dict.fromkeys(label for group, _ in protocols for label, _ in groups[group]))
        if protocols[0][0] == "severity":
            labels = ["0" if label == "clean" else label.rsplit(" ", 1)[-1] for label in labels]
        for (group, name), line in zip(protocols, ("-", "--")):
            if name and len(groups[group]) < 2:
                continue  # the protocol was not run
            points = groups[group]
            xs = [i for i, _ in enumerate(points)] if group == "severity" else [labels.index(x) for x, _ in points]
            _errorbars(
                ax,
                xs,
                [gain(rows, base, new, where)[0] for _, where in points],
                color=lineup.compared.colour,
                ls=line,
                label=name,
            )
        ax.set_xticks(range(len(labels)), labels)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(delta)
        ax.grid(alpha=0.3)
    _plot_gain_vs_error(axes[3], rows, base, new)
    axes[3].set_xlabel(f"difficulty: error of the {lineup.baseline.label}")
    axes[3].set_ylabel(delta)
    fig.suptitle(f"gain of {new.label} over the {lineup.baseline.label}", y=1.02)
    return _save(fig, path)


def _plot_gain_vs_error(ax, rows: list[Row], base: Series, new: Series) -> None:
    """One point per condition: the gain against the baseline's error there, coloured by kind of condition."""
    kinds = {
        "corruption": "corruptions",
        "data_ratio": "data fractions",
        "data_ratio_eq": "data fractions (equal steps)",
        "low_res": "low resolution (train+test)",
        "low_res_shift": "low resolution (test-only)",
        "clean": "clean",
    }
    for i, (kind, name) in enumerate(kinds.items()):
        xs, ys = [], []
        for cond in sorted({r["condition"] for r in rows if r["kind"] == kind}):

            def where(r: Row, c: str = cond) -> bool:
                return r["condition"] == c

            baseline = seed_stat(rows, base, where)
            stat = gain(rows, base, new, where)[0]
            if baseline and stat:
                xs.append(1 - baseline[0])
                ys.append(stat[0])
        if xs:
            ax.scatter(xs, ys, s=14, label=name, color=f"C{i}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_accuracy_vs_nfe(rows: list[Row], path: Path, preset: BenchPreset) -> Path | None:
    """Top-1 against network evaluations per image on each sweep condition: one legend entry per sampler group
    of each swept contender, the baseline as a horizontal line."""
    sweep = sweep_conditions(rows, preset)
    if not sweep:
        return None
    lineup = preset.lineup
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sweep), figsize=(5.2 * len(sweep), 3.8), squeeze=False)
    for ax, (condition, seeds) in zip(axes[0], sweep):
        here = sweep_rows(rows, condition, seeds)
        groups = [
            (group if len(lineup.swept) == 1 else f"{c.label} {group}", sel)
            for c in lineup.swept
            for group, sel in sampler_groups([r for r in here if r["contender"] == c.key]).items()
        ]
        for i, (label, sel) in enumerate(groups):
            _plot_group(ax, sel, label, f"C{i}")
        base = lineup.baseline
        baseline = [r["top1"] for r in here if base and r["contender"] == base.key]
        if baseline:
            ax.axhline(statistics.fmean(baseline), color="grey", ls=":", label=base.label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(condition)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_group(ax, rows: list[Row], label: str, colour: str) -> None:
    """Mean top-1 per NFE of one sampler group, with its spec's marker, joined by its line (if it has one)."""
    spec = SamplerConfig.from_fields(rows[0]).spec
    xs = sorted({r["nfe"] for r in rows})
    means = [statistics.fmean(r["top1"] for r in rows if r["nfe"] == x) for x in xs]
    if spec.line:
        ax.plot(xs, means, linestyle=spec.line, marker=spec.marker, color=colour, label=label)
    else:
        ax.scatter(xs, means, marker=spec.marker, s=60, color=colour, label=label, zorder=3)


def plot_trajectories(trajectories: dict, path: Path, preset: BenchPreset | None = None) -> Path | None:
    images = trajectories.get("images") or []
    contender = Lineup.of(preset).trajectory
    if not images or contender is None:
        return None
    plt = _pyplot()
    kinds = ["easy", "hard"]
    per_kind = max(sum(1 for im in images if im["kind"] == k) for k in kinds)
    fig, axes = plt.subplots(2, per_kind, figsize=(4.4 * per_kind, 5.6), squeeze=False)
    names = trajectories["class_names"]
    for row, kind in enumerate(kinds):
        chosen = [im for im in images if im["kind"] == kind]
        for col in range(per_kind):
            ax = axes[row][col]
            if col >= len(chosen):
                ax.axis("off")
                continue
            _plot_one_trajectory(ax, chosen[col], kind, names)
    fig.suptitle(
        f"{contender.label} CP ({trajectories['steps']} Euler steps): class probabilities from uniform "
        f"to the prediction",
        y=1.0,
    )
    return _save(fig, path)


def _plot_one_trajectory(ax, image: dict, kind: str, names: list[str]) -> None:
    """p(class) over CP steps: the true class in red, a wrong prediction in blue, the other classes in grey."""
    from matplotlib.ticker import MaxNLocator

    probs = list(zip(*image["probs"]))  # K sequences over the steps
    label = image["label"]
    predicted = max(range(len(probs)), key=lambda k: probs[k][-1])
    for k, p in enumerate(probs):
        if k not in (label, predicted):
            ax.plot(range(len(p)), p, lw=0.8, color="0.65")
    if predicted != label:
        ax.plot(
            range(len(probs[predicted])),
            probs[predicted],
            lw=2,
            ls="--",
            color="C0",
            label=f"predicted {names[predicted]}",
        )
    ax.plot(range(len(probs[label])), probs[label], lw=2.2, color="C3", label=f"true class {names[label]}")
    ax.set_title(f"{kind}: test image #{image['index']}", fontsize=9)
    ax.set_xlabel("CP step")
    ax.set_ylabel("p(class)")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left")
    if image.get("pixels"):
        thumb = ax.inset_axes([1.03, 0.55, 0.3, 0.45])  # outside the plot, right of its top
        pixels = image["pixels"]
        thumb.imshow(pixels, cmap="gray" if not isinstance(pixels[0][0], list) else None)
        thumb.set_xticks([])
        thumb.set_yticks([])


def plot_reliability(
    rows: list[Row], path: Path, preset: BenchPreset | None = None, bins_key: str = "reliability"
) -> Path | None:
    """Reliability diagrams per series, clean and at the worst severity, from the rows' ``bins_key`` bins
    (``post_reliability``: after temperature scaling); None when no row has them."""
    rows = [r for r in rows if r.get(bins_key)]
    series = Lineup.of(preset).series(rows, preset)
    worst = worst_severity(rows)
    columns = [("clean test", is_clean)]
    if worst:
        columns.append((f"all corruptions, severity {worst}", at_severity(worst)))
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(columns), len(series), figsize=(3.2 * len(series), 3.2 * len(columns)), squeeze=False)
    edges = [i / ECE_BINS for i in range(ECE_BINS)]
    for i, (title, where) in enumerate(columns):
        for j, s in enumerate(series):
            ax = axes[i][j]
            bins = pooled_bins([r for r in rows if s.matches(r) and where(r)], bins_key)
            acc = [c / n if n else float("nan") for c, n in zip(bins["correct"], bins["count"])]
            ax.bar(edges, acc, width=1 / ECE_BINS, align="edge", edgecolor="black", lw=0.5, label="accuracy")
            ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
            after = " after T" if bins_key == "post_reliability" else ""
            ax.set_title(f"{s.label}\n{title}: pooled ECE{after} {ece_from_bins(bins):.3f}", fontsize=9)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_risk_coverage(rows: list[Row], path: Path, preset: BenchPreset | None = None) -> Path | None:
    """Selective classification: the error rate of the most confident images against the fraction kept, per
    series (mean over the rows' seeds), clean and at the worst severity; the area under each is its AURC."""
    rows = [r for r in rows if r.get("risk_coverage")]
    series = Lineup.of(preset).series(rows, preset)
    if not series:
        return None
    worst = worst_severity(rows)
    panels = [("clean test", is_clean)] + (
        [(f"all corruptions, severity {worst}", at_severity(worst))] if worst else []
    )
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    coverage = [(i + 1) / RISK_COVERAGE_POINTS for i in range(RISK_COVERAGE_POINTS)]
    lineup = Lineup.of(preset)
    for ax, (title, where) in zip(axes[0], panels):
        for s in series:
            curves = [r["risk_coverage"] for r in rows if s.matches(r) and where(r)]
            if curves:
                contender = lineup.get(s.contender)
                mean = [sum(c[i] for c in curves) / len(curves) for i in range(RISK_COVERAGE_POINTS)]
                ax.plot(coverage, mean, marker=".", label=s.label, color=contender.colour if contender else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("coverage (fraction of images kept, most confident first)")
        ax.set_ylabel("error rate of the kept images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_ood_histograms(rows: list[Row], path: Path, preset: BenchPreset | None = None) -> Path | None:
    """The msp score (1 − max p) of the in-distribution test images and of each OOD set, per series (counts of
    every seed pooled, shown as densities on a log scale): the further apart, the better the detection."""
    rows = [r for r in rows if r.get("ood_msp_hist")]
    series = [s for s in Lineup.of(preset).series(rows, preset) if any(s.matches(r) for r in rows)]
    if not series:
        return None
    plt = _pyplot()
    columns = min(len(series), 4)
    lines = -(-len(series) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.6 * columns, 3.0 * lines), squeeze=False)
    for ax, s in zip(axes.flat, series):
        pooled: dict[str, list[int]] = {}
        for r in rows:
            if s.matches(r):
                for name, counts in r["ood_msp_hist"].items():
                    pooled[name] = [a + b for a, b in zip(pooled.get(name, [0] * len(counts)), counts)]
        for name, counts in pooled.items():
            bins, total = len(counts), max(sum(counts), 1)
            edges = [i / bins for i in range(bins + 1)]
            density = [c / total for c in counts]
            ax.stairs(
                density,
                edges,
                label=name,
                fill=name == "in-distribution",
                alpha=0.4 if name == "in-distribution" else 1,
            )
        ax.set_yscale("log")
        ax.set_title(s.label, fontsize=9)
        ax.set_xlabel("msp score (1 − max p)")
        ax.set_ylabel("fraction of images")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(series) :]:
        ax.axis("off")
    return _save(fig, path)


def plot_training_curves(curves: list[Curve], path: Path, preset: BenchPreset | None = None) -> Path | None:
    """Training loss and validation top-1 per epoch of the full-data models, one line per seed, coloured by
    contender."""
    curves = [c for c in curves if c.full_data]
    if not curves:
        return None
    lineup = Lineup.of(preset)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    seen = set()
    for curve in sorted(curves, key=lambda c: c.name):
        contender = lineup.get(curve.contender)
        colour = contender.colour if contender else None
        label = (contender.label if contender else curve.contender) if curve.contender not in seen else None
        seen.add(curve.contender)
        epochs = [r["epoch"] for r in curve.rows]
        axes[0].plot(epochs, [r["train_loss"] for r in curve.rows], color=colour, alpha=0.8, label=label)
        axes[1].plot(epochs, [r["val_top1"] for r in curve.rows], color=colour, alpha=0.8, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss (CE or score entropy)")
    axes[1].set_ylabel("validation top-1 after the epoch\n(DiDiCM: one-pass readout)")
    fig.suptitle("training at full data (one line per seed)", y=1.02)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)

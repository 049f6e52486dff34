"""Tables and plots of a benchmark's rows (see :mod:`diffcls.eval.benchmark`).

Every number is a statistic over training seeds: for each seed, the mean over the conditions a cell covers
(e.g. all noise corruptions at severity 3), then mean ± std across seeds (only seeds that cover every condition
of the cell count). The gain Δ is DiDiCM minus the standard twin, paired by seed: the mean ± std over seeds of
the per-seed difference. A gain is *beyond the seed spread* when, with at least 3 seeds, the two models'
per-seed accuracies do not overlap at all (every DiDiCM seed above every twin seed, or every one below; with
3 seeds each, chance alone does that with probability 2/20 = 0.1); with fewer seeds it is not judged ("n/a").
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from diffcls.data.corruptions import FAMILY_NAMES
from diffcls.inference.metrics import ECE_BINS, ece_from_bins
from diffcls.runtime.io import atomic_write

Row = dict
Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class Series:
    """A contender read out one way: what a table column or a plot line shows."""

    contender: str
    readout: str
    label: str

    def matches(self, row: Row) -> bool:
        return row["contender"] == self.contender and row["readout"] == self.readout


def default_series(rows: list[Row], grid_readout: str | None = None) -> list[Series]:
    """Twin, plain ResNet, DiDiCM with the grid sampler (``grid_readout``; by default the DiDiCM readout with the
    most rows), DiDiCM one-pass, and the Diffusion Classifier when the benchmark has it."""
    grid = grid_readout or _most_common(r["readout"] for r in rows
                                        if r["contender"] == "didicm" and r["readout"] != "one-pass")
    series = [Series("standard", "softmax", "standard twin"), Series("plain", "softmax", "plain ResNet")]
    if grid:
        series.append(Series("didicm", grid, f"DiDiCM {grid}"))
    series.append(Series("didicm", "one-pass", "DiDiCM one-pass"))
    dc = _most_common(r["readout"] for r in rows if r["contender"] == "dc")
    if dc:
        series.append(Series("dc", dc, "Diffusion Classifier"))
    return [s for s in series if any(s.matches(r) for r in rows)]


def _most_common(values: Iterable[str]) -> str | None:
    values = list(values)
    return max(sorted(set(values)), key=values.count) if values else None  # sorted: ties break the same way


# ---------------------------------------------------------------------------------------------------- statistics


def per_seed(rows: list[Row], series: Series, where: Predicate, metric: str = "top1") -> dict[int, float]:
    """``{seed: mean of metric over the matching rows}`` for one series, over the seeds that cover every matching
    condition (a seed evaluated on fewer conditions, e.g. only in the NFE sweep, would average something else)."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        if series.matches(r) and where(r):
            by_seed.setdefault(r["seed"], {})[r["condition"]] = r[metric]
    complete = max((len(v) for v in by_seed.values()), default=0)
    return {s: statistics.fmean(v.values()) for s, v in by_seed.items() if len(v) == complete}


def mean_std(values: Iterable[float]) -> tuple[float, float, int] | None:
    values = list(values)
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def fmt(stat: tuple[float, float, int] | None, digits: int = 3, signed: bool = False) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if n > 1 else text


MIN_SEEDS_FOR_SPREAD = 3


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


# --------------------------------------------------------------------------------------------------------- tables


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def gain_pair(series: list[Series]) -> tuple[Series, Series] | None:
    """(standard twin, DiDiCM with the grid sampler): the pair every Δ compares, if both are present."""
    base = next((s for s in series if s.contender == "standard"), None)
    new = next((s for s in series if s.contender == "didicm" and s.readout != "one-pass"), None)
    return (base, new) if base and new else None


def comparison_rows(rows: list[Row], series: list[Series], groups: list[tuple[str, Predicate]]) -> list[list[str]]:
    """One table row per (label, predicate): each series' top-1, then Δ (DiDiCM − twin) and its spread flag."""
    pair = gain_pair(series)
    body = []
    for label, where in groups:
        cells = [fmt(mean_std(per_seed(rows, s, where).values())) for s in series]
        if pair:
            base, new = pair
            stat, beyond = gain(rows, base, new, where)
            cells += [fmt(stat, signed=True), beyond]
        body.append([label, *cells])
    return body


def comparison_header(series: list[Series], first: str) -> list[str]:
    head = [first, *[f"{s.label} top-1" for s in series]]
    pair = gain_pair(series)
    if pair:
        head += [f"Δ {pair[1].label} − twin", "beyond seed spread"]
    return head


def is_clean(r: Row) -> bool:
    return r["kind"] == "clean"


def condition_groups(rows: list[Row]) -> dict[str, list[tuple[str, Predicate]]]:
    """The report's groups of conditions, each a list of (label, predicate)."""
    severities = sorted({r["severity"] for r in rows if r["kind"] == "corruption"})
    families = [f for f in FAMILY_NAMES if any(r.get("family") == f for r in rows)]
    names = sorted({r["corruption"] for r in rows if r["kind"] == "corruption"},
                   key=lambda n: (FAMILY_NAMES.index(_family(rows, n)), n))
    ratios = sorted({r["data_ratio"] for r in rows if r["kind"] == "data_ratio"}, reverse=True)
    resolutions = sorted({r["low_res"] for r in rows if r["kind"] == "low_res"}, reverse=True)

    def corr(sev=None, fam=None, name=None) -> Predicate:
        return lambda r: (r["kind"] == "corruption" and (sev is None or r["severity"] == sev)
                          and (fam is None or r["family"] == fam) and (name is None or r["corruption"] == name))

    clean_label = ("clean", is_clean)
    everything = f"all {len(names)}" if len(names) > 1 else "all"
    return {
        "severity": [clean_label] + [(f"{everything}, severity {s}", corr(sev=s)) for s in severities],
        "family": [(f"{f}, severity {s}", corr(sev=s, fam=f)) for f in families for s in severities]
        + [(f"{f}, mean", corr(fam=f)) for f in families],
        "corruption": [(n, corr(name=n)) for n in names],
        "data_ratio": [("100%", is_clean)] + [(percent(r), lambda row, r=r: row["kind"] == "data_ratio"
                                              and row["data_ratio"] == r) for r in ratios],
        "low_res": [("native", is_clean)] + [(f"{s} px", lambda row, s=s: row["kind"] == "low_res"
                                              and row["low_res"] == s) for s in resolutions],
    }


def percent(fraction: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:g}%"


def _family(rows: list[Row], name: str) -> str:
    return next(r["family"] for r in rows if r.get("corruption") == name)


def nfe_table(rows: list[Row], condition: str) -> str:
    """DiDiCM readouts on one condition: NFE, top-1, NLL, ECE and seconds per 1,000 images; the twin for scale."""
    here = _sweep_rows(rows, condition)
    sweep_seeds = {r["seed"] for r in here}
    readouts = sorted({(r["nfe"], r["readout"]) for r in here if r["contender"] == "didicm"},
                      key=lambda x: (x[1].startswith("CL"), "analytic" in x[1], x[0]))
    body = []
    for nfe, readout in [(1, "softmax")] + readouts:
        contender = "standard" if readout == "softmax" else "didicm"
        sel = [r for r in here if r["contender"] == contender and r["readout"] == readout]
        if not sel:
            continue
        series = Series(contender, readout, "")
        cells = [fmt(mean_std(per_seed(sel, series, lambda r: True, m).values())) for m in ("top1", "nll", "ece")]
        per_1000 = statistics.median(1000 * r["seconds"] / r["num_samples"] for r in sel)
        name = "standard twin (softmax)" if readout == "softmax" else f"DiDiCM {readout}"
        body.append([name, str(nfe), *cells, f"{per_1000:.1f}"])
    seeds = ", ".join(map(str, sorted(sweep_seeds)))
    return (f"Training seed{'s' if len(sweep_seeds) > 1 else ''} {seeds}.\n\n"
            + markdown_table(["readout", "NFE / image", "top-1", "NLL", "ECE", "s / 1000 images"], body))


def _sweep_rows(rows: list[Row], condition: str) -> list[Row]:
    """The rows of ``condition`` from the training seeds that ran the NFE sweep, so that every readout in its
    table and plot averages the same models."""
    here = [r for r in rows if r["condition"] == condition]
    sweep_seeds = {r["seed"] for r in here if r["sampler"] == "cl" or r["cp_update"] == "analytic"}
    return [r for r in here if r["seed"] in sweep_seeds]


def summary_table(rows: list[Row]) -> str:
    """Plain-text table for the terminal: top-1 of each series per condition group, and DiDiCM's gain."""
    series = default_series(rows)
    groups = condition_groups(rows)
    chosen = (groups["severity"] + groups["data_ratio"][1:]
              + [(f"low res {label}", w) for label, w in groups["low_res"][1:]])
    body = comparison_rows(rows, series, chosen)
    header = comparison_header(series, "condition")
    table = [header] + body
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in table)


# ---------------------------------------------------------------------------------------------------------- plots


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


def _plot_series(ax, xs: list, rows: list[Row], series: Series, wheres: list[Predicate], **style) -> None:
    stats = [mean_std(per_seed(rows, series, w).values()) for w in wheres]
    points = [(x, s) for x, s in zip(xs, stats) if s is not None]
    if points:
        ax.errorbar([x for x, _ in points], [s[0] for _, s in points], yerr=[s[1] for _, s in points],
                    label=series.label, marker="o", ms=4, capsize=3, **style)


def plot_accuracy_vs_severity(rows: list[Row], path: Path) -> Path | None:
    severities = sorted({r["severity"] for r in rows if r["kind"] == "corruption"})
    families = [f for f in FAMILY_NAMES if any(r.get("family") == f for r in rows)]
    if not severities:
        return None
    plt = _pyplot()
    panels = families + ["all"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], panels):
        wheres = [is_clean] + [lambda r, s=s, f=family: r["kind"] == "corruption" and r["severity"] == s
                               and (f == "all" or r["family"] == f) for s in severities]
        for series in default_series(rows):
            _plot_series(ax, [0, *severities], rows, series, wheres)
        ax.set_title(f"{family} corruptions" if family != "all" else "mean of all corruptions")
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks([0, *severities])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def plot_gain_vs_difficulty(rows: list[Row], path: Path) -> Path | None:
    """Δ (DiDiCM − twin) against severity, data fraction, resolution, and against the twin's error (Fig. 1/4a)."""
    pair = gain_pair(default_series(rows))
    if not pair:
        return None
    base, new = pair
    plt = _pyplot()
    groups = condition_groups(rows)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    axis_specs = [("severity", "corruption severity (0 = clean)", [0] + sorted(
        {r["severity"] for r in rows if r["kind"] == "corruption"})),
        ("data_ratio", "training data fraction", [1.0] + sorted(
            {r["data_ratio"] for r in rows if r["kind"] == "data_ratio"}, reverse=True)),
        ("low_res", "input resolution (px)", ["native"] + sorted(
            {r["low_res"] for r in rows if r["kind"] == "low_res"}, reverse=True))]
    for ax, (group, xlabel, xs) in zip(axes, axis_specs):
        stats = [gain(rows, base, new, where)[0] for _, where in groups[group]]
        points = [(i, s) for i, s in enumerate(stats) if s is not None]
        ax.axhline(0, color="grey", lw=0.8)
        if points:
            ax.errorbar([i for i, _ in points], [s[0] for _, s in points], yerr=[s[1] for _, s in points],
                        marker="o", capsize=3, color="C2")
        ax.set_xticks(range(len(xs)), [percent(x) if group == "data_ratio" else str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Δ top-1 (DiDiCM − twin)")
        ax.grid(alpha=0.3)
    ax = axes[3]
    kinds = {"corruption": "corruptions", "data_ratio": "data fractions", "low_res": "low resolution",
             "clean": "clean"}
    for i, (kind, name) in enumerate(kinds.items()):
        xs, ys = [], []
        for cond in sorted({r["condition"] for r in rows if r["kind"] == kind}):
            where = (lambda r, c=cond: r["condition"] == c)
            twin = mean_std(per_seed(rows, base, where).values())
            stat = gain(rows, base, new, where)[0]
            if twin and stat:
                xs.append(1 - twin[0])
                ys.append(stat[0])
        if xs:
            ax.scatter(xs, ys, s=14, label=name, color=f"C{i}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("difficulty: error of the standard twin")
    ax.set_ylabel("Δ top-1 (DiDiCM − twin)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"gain of {new.label} over the standard twin", y=1.02)
    return _save(fig, path)


def plot_accuracy_vs_nfe(rows: list[Row], path: Path) -> Path | None:
    sweep = [c for c in _sweep_conditions(rows)]
    if not sweep:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sweep), figsize=(5.2 * len(sweep), 3.8), squeeze=False)
    for ax, condition in zip(axes[0], sweep):
        here = _sweep_rows(rows, condition)
        for update, style in (("euler", "-o"), ("analytic", "--s")):
            sel = sorted((r for r in here if r["sampler"] == "cp" and r["cp_update"] == update), key=lambda r: r["nfe"])
            xs = sorted({r["nfe"] for r in sel})
            means = [statistics.fmean(r["top1"] for r in sel if r["nfe"] == x) for x in xs]
            if xs:
                ax.plot(xs, means, style, label=f"CP {update}")
        cl = [r for r in here if r["sampler"] == "cl"]
        for x in sorted({r["nfe"] for r in cl}):
            chains = sorted({r["chains"] for r in cl})
            ax.scatter([x], [statistics.fmean(r["top1"] for r in cl if r["nfe"] == x)], marker="^", color="C3",
                       label=f"CL ({'/'.join(map(str, chains))} chains × steps)" if x == min(r["nfe"] for r in cl)
                       else None)
        onepass = [r["top1"] for r in here if r["sampler"] == "onepass"]
        if onepass:
            ax.scatter([1], [statistics.fmean(onepass)], marker="*", s=120, color="C4", label="one-pass", zorder=3)
        twin = [r["top1"] for r in here if r["contender"] == "standard"]
        if twin:
            ax.axhline(statistics.fmean(twin), color="grey", ls=":", label="standard twin")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(condition)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _sweep_conditions(rows: list[Row]) -> list[str]:
    return sorted({r["condition"] for r in rows if r["sampler"] in ("cl",) or r["cp_update"] == "analytic"},
                  key=lambda c: c != "clean")


def plot_trajectories(trajectories: dict, path: Path) -> Path | None:
    images = trajectories.get("images") or []
    if not images:
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
    fig.suptitle(f"DiDiCM CP ({trajectories['steps']} Euler steps): class probabilities from uniform to the "
                 f"prediction", y=1.0)
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
        ax.plot(range(len(probs[predicted])), probs[predicted], lw=2, ls="--", color="C0",
                label=f"predicted {names[predicted]}")
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


def pooled_bins(rows: list[Row]) -> dict[str, list]:
    pooled = {"count": [0] * ECE_BINS, "confidence": [0.0] * ECE_BINS, "correct": [0.0] * ECE_BINS}
    for r in rows:
        for key in pooled:
            pooled[key] = [a + b for a, b in zip(pooled[key], r["reliability"][key])]
    return pooled


def plot_reliability(rows: list[Row], path: Path) -> Path | None:
    series = default_series(rows)
    worst = max((r["severity"] for r in rows if r["kind"] == "corruption"), default=None)
    columns = [("clean test", is_clean)]
    if worst:
        columns.append((f"all corruptions, severity {worst}",
                        lambda r: r["kind"] == "corruption" and r["severity"] == worst))
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(columns), len(series), figsize=(3.2 * len(series), 3.2 * len(columns)),
                             squeeze=False)
    edges = [i / ECE_BINS for i in range(ECE_BINS)]
    for i, (title, where) in enumerate(columns):
        for j, s in enumerate(series):
            ax = axes[i][j]
            bins = pooled_bins([r for r in rows if s.matches(r) and where(r)])
            acc = [c / n if n else float("nan") for c, n in zip(bins["correct"], bins["count"])]
            ax.bar(edges, acc, width=1 / ECE_BINS, align="edge", edgecolor="black", lw=0.5, label="accuracy")
            ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
            ax.set_title(f"{s.label}\n{title}: pooled ECE {ece_from_bins(bins):.3f}", fontsize=9)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_training_curves(curves: dict[str, list[dict]], path: Path) -> Path | None:
    curves = {name: rows for name, rows in curves.items() if "-r1-" in name}  # full data; fractions would crowd it
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = {"standard": "C0", "plain": "C1", "didicm": "C2", "dc": "C4"}
    labels = {"standard": "standard twin", "plain": "plain ResNet", "didicm": "DiDiCM", "dc": "Diffusion Classifier"}
    seen = set()
    for name, rows in sorted(curves.items()):
        key = name.split("-")[0]
        epochs = [r["epoch"] for r in rows]
        label = labels.get(key, key) if key not in seen else None
        seen.add(key)
        axes[0].plot(epochs, [r["train_loss"] for r in rows], color=colors.get(key), alpha=0.8, label=label)
        axes[1].plot(epochs, [r["val_top1"] for r in rows], color=colors.get(key), alpha=0.8, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss (CE or score entropy)")
    axes[1].set_ylabel("test top-1 after the epoch\n(DiDiCM: one-pass readout)")
    fig.suptitle("training at full data (one line per seed)", y=1.02)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------- report


def write_report(rows: list[Row], trajectories: dict, out: Path, preset, data: str, curves: dict[str, list[dict]],
                 seconds: float, command: str | None, corruption_set: str | None = None) -> dict:
    """Write ``report.md`` and ``plots/*.png`` into ``out``; returns ``{"report": path, "plots": [paths]}``."""
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = {
        "accuracy_vs_severity": plot_accuracy_vs_severity(rows, plots_dir / "accuracy_vs_severity.png"),
        "gain_vs_difficulty": plot_gain_vs_difficulty(rows, plots_dir / "gain_vs_difficulty.png"),
        "accuracy_vs_nfe": plot_accuracy_vs_nfe(rows, plots_dir / "accuracy_vs_nfe.png"),
        "cp_trajectories": plot_trajectories(trajectories, plots_dir / "cp_trajectories.png"),
        "reliability": plot_reliability(rows, plots_dir / "reliability.png"),
        "training_curves": plot_training_curves(curves, plots_dir / "training_curves.png"),
    }
    text = report_markdown(rows, preset, data, seconds, command, {k: v for k, v in plots.items() if v}, curves,
                           corruption_set)
    path = out / "report.md"
    atomic_write(path, lambda f: f.write(text.encode()))
    return {"report": path, "plots": [p for p in plots.values() if p]}


def report_markdown(rows: list[Row], preset, data: str, seconds: float, command: str | None,
                    plots: dict[str, Path], curves: dict[str, list[dict]], corruption_set: str | None = None) -> str:
    series = default_series(rows)
    groups = condition_groups(rows)
    parts = [
        f"# Uncertainty benchmark: preset `{preset.name}` on `{data}`",
        "",
        f"Command: `{command or 'diffcls bench --preset ' + preset.name + ' --data ' + data}`  ",
        f"Total time: {seconds / 60:.1f} min (training and evaluation, summed over resumed parts).  ",
        _budget_line(rows, preset, corruption_set),
        "",
        "Contenders: **standard twin** (DiDiRN without the label/noise conditioning, cross-entropy), **plain ResNet** "
        "(same widths, BatchNorm only) and **DiDiCM** (score entropy on the same DiDiRN), read out by "
        f"`{(gain_pair(series) or (None, Series('', 'CP', '')))[1].readout}` and by the one-pass readout. "
        "Numbers are mean ± std over training seeds (a bare number: one seed). Δ is DiDiCM minus the twin, the "
        f"mean of per-seed differences; *beyond seed spread* (judged from {MIN_SEEDS_FOR_SPREAD} seeds on) means "
        "every DiDiCM seed lies above every twin seed, or every one below.",
        *_dc_note(rows, preset),
        "",
        "## Clean test set, full training data",
        "",
        _clean_table(rows, series),
        "",
        "## Corruptions: mean over all corruptions by severity",
        "",
        markdown_table(comparison_header(series, "condition"), comparison_rows(rows, series, groups["severity"])),
    ]
    if groups["family"]:
        parts += ["", "## Corruptions by family", "",
                  markdown_table(comparison_header(series, "family, severity"),
                                 comparison_rows(rows, series, groups["family"])),
                  "", "## Each corruption (mean over severities)", "",
                  markdown_table(comparison_header(series, "corruption"),
                                 comparison_rows(rows, series, groups["corruption"]))]
    for key, title, first in (("data_ratio", "Scarce training data", "training data"),
                              ("low_res", "Low resolution (downsampled, then resized back)", "resolution")):
        if len(groups[key]) > 1:
            parts += ["", f"## {title}", "",
                      markdown_table(comparison_header(series, first), comparison_rows(rows, series, groups[key]))]
    for condition in _sweep_conditions(rows):
        parts += ["", f"## NFE sweep on `{condition}`", "", nfe_table(rows, condition)]
    parts += ["", "## Calibration", "", _calibration_table(rows, series)]
    if curves:
        parts += ["", "## Training curves", "", _budget_text(curves)]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{name}](plots/{p.name})" for name, p in plots.items()]
    return "\n".join(parts) + "\n"


def _dc_note(rows: list[Row], preset=None) -> list[str]:
    """How the Diffusion Classifier's cells were measured (only when the benchmark has it)."""
    dc = [r for r in rows if r["contender"] == "dc"]
    if not dc:
        return []
    settings = getattr(preset, "diffusion_classifier", None)
    recipe = ""
    if settings is not None:
        recipe = (f" Its own training recipe (a DDPM needs more optimisation steps than a classifier): "
                  f"{settings.epochs or preset.epochs} epochs at batch {settings.batch_size}, lr {settings.lr:g}, "
                  f"EMA {settings.ema_decay}" + (f", images at {settings.img_size} px (so low-resolution views at "
                                                 f"{settings.img_size} px and above do not degrade them)"
                                                 if settings.img_size else "") + ".")
    return ["", f"**Diffusion Classifier** ({dc[0]['model']}, DDPM; readout `{dc[0]['readout']}`, {dc[0]['nfe']} "
                f"network evaluations per image): seed {dc[0]['seed']} only, each cell measured on a fixed stratified "
                f"subset of {dc[0]['num_samples']} test images (the other contenders use the whole test split), with "
                f"the temperature of softmax(−λ·error) fitted on other clean test images (λ = {dc[0]['temperature']:.4g})."
                + recipe]


def _budget_line(rows: list[Row], preset, corruption_set: str | None) -> str:
    """Which models were trained how, and which seeds meet which conditions."""
    def seeds_of(kind: str) -> str:
        return ", ".join(map(str, sorted({r["seed"] for r in rows if r["kind"] == kind}))) or "none"

    text = (f"Budget: {preset.epochs} epochs for every model at every data fraction (a fraction's subset is tiled "
            f"to the full training set's length, so each gets the same number of optimisation steps); batch "
            f"{preset.batch_size}. Training seeds: {seeds_of('clean')} at full data")
    if preset.data_ratios:
        smallest = min(preset.data_ratios)
        at_smallest = sorted({r["seed"] for r in rows if r["kind"] == "data_ratio" and r["data_ratio"] == smallest})
        text += f", {', '.join(map(str, at_smallest))} at {percent(smallest)}, the first seed at the other fractions"
    text += f"; seeds {seeds_of('corruption')} meet the corruptions and {seeds_of('low_res')} the low resolutions."
    sizes = sorted({r["num_samples"] for r in rows if r["contender"] != "dc"})
    if sizes:
        text += f" Test images per row: {', '.join(map(str, sizes))}" + (
            " (a fixed stratified subset of the test split)." if preset.eval_limit else ".")
    if corruption_set:
        text += (f" Corruption parameters: the {'CIFAR-10-C' if corruption_set == 'cifar' else 'ImageNet-C'} set"
                 " (images under 32 px are upscaled to 32 px for the corruption and brought back).")
    return text


def _clean_table(rows: list[Row], series: list[Series]) -> str:
    body = []
    for s in series:
        cells = [fmt(mean_std(per_seed(rows, s, is_clean, m).values())) for m in ("top1", "top5", "nll", "ece")]
        body.append([s.label, *cells])
    return markdown_table(["model", "top-1", "top-5", "NLL", "ECE"], body)


def _calibration_table(rows: list[Row], series: list[Series]) -> str:
    worst = max((r["severity"] for r in rows if r["kind"] == "corruption"), default=None)
    header, body = ["model", "clean NLL", "clean ECE"], []
    if worst:
        header += [f"all corruptions, severity {worst}: NLL", f"all corruptions, severity {worst}: ECE"]
    for s in series:
        cells = [fmt(mean_std(per_seed(rows, s, is_clean, m).values())) for m in ("nll", "ece")]
        if worst:
            hard = lambda r: r["kind"] == "corruption" and r["severity"] == worst  # noqa: E731
            cells += [fmt(mean_std(per_seed(rows, s, hard, m).values())) for m in ("nll", "ece")]
        body.append([s.label, *cells])
    return markdown_table(header, body)


def _budget_text(curves: dict[str, list[dict]]) -> str:
    body = []
    for name, rows in sorted(curves.items()):
        last = rows[-1]
        tail = [r["val_top1"] for r in rows[-5:]]
        body.append([name, str(int(last["epoch"])), f"{last['train_loss']:.4f}", f"{last['val_top1']:.3f}",
                     f"{max(tail) - min(tail):.3f}", f"{sum(r['seconds'] for r in rows):.0f}"])
    note = ("Test top-1 after each epoch comes from the training loop's validation: softmax for the standard "
            "models, DiDiCM's one-pass readout (its CP readout is in the tables above).")
    return note + "\n\n" + markdown_table(["model", "epochs", "final loss", "final test top-1",
                                            "range of the last 5 epochs", "training s"], body)

"""The benchmark's tables and report text: markdown tables of :mod:`diffcls.bench.stats` cells, the terminal
summary, and ``report.md``'s text.

Columns are the lineup's series (:meth:`~diffcls.bench.contenders.Lineup.series`), in contender order; the gain Δ
is the compared contender's first series minus the baseline's (DiDiCM with the grid sampler minus the standard
twin). Labels come from the contenders; rows without a preset are read against the default lineup.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from diffcls.bench.contenders import Contender, Lineup
from diffcls.bench.grid import BenchPreset
from diffcls.bench.stats import (
    MIN_SEEDS_FOR_SPREAD,
    Curve,
    Predicate,
    Row,
    Series,
    at_severity,
    bootstrap_gain,
    condition_groups,
    gain,
    is_clean,
    percent,
    relative_corruption_error,
    sampler_groups,
    seed_stat,
    sweep_conditions,
    sweep_rows,
    worst_severity,
)


def fmt(stat: tuple[float, float, int] | None, digits: int = 3, signed: bool = False) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if n > 1 else text


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def metric_cells(rows: list[Row], series: Series, where: Predicate, metrics: tuple[str, ...]) -> list[str]:
    """One series' cells (mean ± std over seeds) for each metric, on the rows ``where`` selects."""
    return [fmt(seed_stat(rows, series, where, m)) for m in metrics]


# ------------------------------------------------------------------------------------------------- comparisons


def comparison_rows(
    rows: list[Row], series: list[Series], groups: list[tuple[str, Predicate]], lineup: Lineup
) -> list[list[str]]:
    """One table row per (label, predicate): each series' top-1, then Δ (compared − baseline) and its spread flag."""
    pair = lineup.gain_pair(series)
    body = []
    for label, where in groups:
        cells = [fmt(seed_stat(rows, s, where)) for s in series]
        if pair:
            stat, beyond = gain(rows, *pair, where)
            cells += [fmt(stat, signed=True), beyond, fmt_interval(bootstrap_gain(rows, *pair, where))]
        body.append([label, *cells])
    return body


def fmt_interval(interval: tuple[float, float] | None, digits: int = 3) -> str:
    return "–" if interval is None else f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"


def comparison_header(series: list[Series], first: str, lineup: Lineup) -> list[str]:
    head = [first, *[f"{s.label} top-1" for s in series]]
    pair = lineup.gain_pair(series)
    if pair:
        head += [f"Δ {pair[1].label} − {lineup.baseline.name}", "beyond seed spread", "Δ 95% CI (test images)"]
    return head


def comparison_table(
    rows: list[Row], series: list[Series], groups: list[tuple[str, Predicate]], first: str, lineup: Lineup
) -> str:
    return markdown_table(comparison_header(series, first, lineup), comparison_rows(rows, series, groups, lineup))


# The condition groups besides the corruptions, as the summary table prefixes their rows
SUMMARY_GROUPS = (
    ("data_ratio", "data"),
    ("data_ratio_eq", "data (equal steps)"),
    ("low_res", "train+test at"),
    ("low_res_shift", "test-only view"),
)

# The report's sections for them: (group, title, first column's header)
GROUP_SECTIONS = (
    ("data_ratio", "Scarce training data: the reference's protocol (same epochs, lr × √(1/r))", "training data"),
    ("data_ratio_eq", "Scarce training data: equal optimisation steps (our variant)", "training data"),
    ("low_res", "Low resolution: the paper's protocol (trained and tested at RES×RES)", "resolution"),
    ("low_res_shift", "Low resolution as a shift (full-size models, test images at RES, resized back)", "resolution"),
)


def summary_table(rows: list[Row], preset: BenchPreset | None = None) -> str:
    """Plain-text table for the terminal: top-1 of each series per condition group, and the gain Δ."""
    lineup = Lineup.of(preset)
    series = lineup.series(rows, preset)
    groups = condition_groups(rows)
    chosen = groups["severity"] + [
        (f"{prefix} {label}", where) for key, prefix in SUMMARY_GROUPS for label, where in groups[key][1:]
    ]
    table = [comparison_header(series, "condition", lineup)] + comparison_rows(rows, series, chosen, lineup)
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in table)


# ------------------------------------------------------------------------------------------------------ NFE sweep


def sweep_entries(rows: list[Row], lineup: Lineup) -> list[tuple[Contender, str, list[Row]]]:
    """(contender, readout, rows) of an NFE sweep's rows: the baseline's readouts for scale, then each swept
    contender's readouts by plot group and NFE."""

    def of(c: Contender) -> list[Row]:
        return [r for r in rows if r["contender"] == c.key]

    base = lineup.baseline
    groups = ([(base, of(base))] if base else []) + [
        (c, group) for c in lineup.swept for group in sampler_groups(of(c)).values()
    ]
    return [(c, readout, sel) for c, group in groups for readout, sel in by_readout(group).items()]


def by_readout(rows: list[Row]) -> dict[str, list[Row]]:
    """The rows by their readout label, in the order they first show them."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r["readout"], []).append(r)
    return groups


def nfe_table(rows: list[Row], condition: str, seeds: tuple[int, ...], lineup: Lineup) -> str:
    """The swept contenders' readouts on one condition: NFE, top-1, NLL, ECE and seconds per 1,000 images; the
    baseline for scale."""
    here = sweep_rows(rows, condition, seeds)
    body = []
    for c, readout, sel in sweep_entries(here, lineup):
        name = c.series_label(readout) if c.swept else f"{c.label} ({readout})"
        cells = metric_cells(sel, Series(c.key, readout, ""), lambda r: True, ("top1", "nll", "ece"))
        per_1000 = statistics.median(1000 * r["seconds"] / r["num_samples"] for r in sel)
        body.append([name, str(sel[0]["nfe"]), *cells, f"{per_1000:.1f}"])
    seeds_here = sorted({r["seed"] for r in here})
    return f"Training seed{'s' if len(seeds_here) > 1 else ''} {', '.join(map(str, seeds_here))}.\n\n" + markdown_table(
        ["readout", "NFE / image", "top-1", "NLL", "ECE", "s / 1000 images"], body
    )


# --------------------------------------------------------------------------------------------------------- report


def report_markdown(
    rows: list[Row],
    preset: BenchPreset,
    data: str,
    seconds: float,
    command: str | None,
    plots: dict[str, Path],
    curves: list[Curve],
    corruption_set: str | None = None,
) -> str:
    """The text of ``report.md``: setup, one table per condition group, the NFE sweeps, calibration, training."""
    lineup = preset.lineup
    series = lineup.series(rows, preset)
    groups = condition_groups(rows)
    parts = [
        f"# Uncertainty benchmark: preset `{preset.name}` on `{data}`",
        "",
        f"Command: `{command or 'diffcls bench --preset ' + preset.name + ' --data ' + data}`  ",
        f"Total time: {seconds / 60:.1f} min (training and evaluation, summed over resumed parts).  ",
        _budget_line(rows, preset, corruption_set),
        "",
        _contenders_text(series, lineup),
        *[line for c in lineup for line in c.report_notes(rows, preset)],
        "",
        "## Clean test set, full training data",
        "",
        _clean_table(rows, series),
        "",
        "## Corruptions: mean over all corruptions by severity",
        "",
        comparison_table(rows, series, groups["severity"], "condition", lineup),
    ]
    if groups["family"]:
        parts += [
            "",
            "## Corruptions by family",
            "",
            comparison_table(rows, series, groups["family"], "family, severity", lineup),
            "",
            "## Each corruption (mean over severities)",
            "",
            comparison_table(rows, series, groups["corruption"], "corruption", lineup),
        ]
    for key, title, first in GROUP_SECTIONS:
        if len(groups[key]) > 1:
            parts += ["", f"## {title}", "", comparison_table(rows, series, groups[key], first, lineup)]
    for condition, seeds in sweep_conditions(rows, preset):
        parts += ["", f"## NFE sweep on `{condition}`", "", nfe_table(rows, condition, seeds, lineup)]
    ood = _ood_table(rows, series)
    if ood:
        parts += ["", "## Out-of-distribution detection", "", OOD_TEXT, "", ood]
    relative = _relative_corruption_table(rows, series)
    if relative:
        parts += ["", "## Corruption error relative to the plain ResNet", "", RELATIVE_CE_TEXT, "", relative]
    parts += ["", "## Calibration", "", _calibration_table(rows, series)]
    if any("post_nll" in r for r in rows):
        parts += ["", "## After temperature scaling", "", TEMPERATURE_TEXT, "", _temperature_table(rows, series)]
    if curves:
        parts += ["", "## Training curves and cost", "", _budget_text(curves, lineup)]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{name}](plots/{p.name})" for name, p in plots.items()]
    return "\n".join(parts) + "\n"


def _contenders_text(series: list[Series], lineup: Lineup) -> str:
    """Who competes (the contenders with a description, and how each is read out) and what Δ means."""
    listed = []
    for c in lineup:
        if c.description:
            readouts = [f"`{s.readout}`" for s in series if s.contender == c.key]
            read = "; read out by " + " and by ".join(readouts) if len(readouts) > 1 else ""
            listed.append(f"**{c.label}** ({c.description}{read})")
    text = f"Contenders: {_and(listed)}. Numbers are mean ± std over training seeds (a bare number: one seed)."
    pair = lineup.gain_pair(series)
    if pair:
        new, base = lineup.compared.label, lineup.baseline.name
        text += (
            f" Δ is {new} minus the {base}, the mean of per-seed differences; *beyond seed spread* (judged "
            f"from {MIN_SEEDS_FOR_SPREAD} seeds on) means every {new} seed lies above every {base} seed, or "
            "every one below."
        )
    return text


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))


def _budget_line(rows: list[Row], preset: BenchPreset, corruption_set: str | None) -> str:
    """Which models were trained how, and which seeds meet which conditions."""

    def seeds_of(kind: str) -> str:
        return ", ".join(map(str, sorted({r["seed"] for r in rows if r["kind"] == kind}))) or "none"

    budgets = _and([f"{preset.epochs_for(c)} for the {c.label}" for c in preset.lineup if c.full_test_split])
    text = (
        f"Budget (epochs, chosen from validation curves, see *Training curves*): {budgets}; batch "
        f"{preset.batch_size}. Validation: {preset.val_split:.0%} of the training images, held out (stratified, "
        f"fixed seed); the test split is used for these tables only. Training seeds: {seeds_of('clean')} at "
        f"full data"
    )
    fractions = preset.data_ratios + preset.equal_steps_ratios
    if fractions:
        smallest = min(fractions)
        at_smallest = sorted(
            {r["seed"] for r in rows if r["kind"].startswith("data_ratio") and r["data_ratio"] == smallest}
        )
        text += f", {', '.join(map(str, at_smallest))} at {percent(smallest)}, the first seed at the other fractions"
    text += (
        f"; seeds {seeds_of('corruption')} meet the corruptions and "
        f"{seeds_of('low_res') if preset.low_res else seeds_of('low_res_shift')} the low resolutions."
    )
    if preset.train_limit:
        text += f" Training pool: a fixed stratified subset of {preset.train_limit} training images."
    whole = {c.key for c in preset.lineup if c.full_test_split}
    sizes = sorted({r["num_samples"] for r in rows if r["contender"] in whole})
    if sizes:
        text += f" Test images per row: {', '.join(map(str, sizes))}" + (
            " (a fixed stratified subset of the test split)." if preset.eval_limit else "."
        )
    if corruption_set:
        text += (
            f" Corruption parameters: the {'CIFAR-10-C' if corruption_set == 'cifar' else 'ImageNet-C'} set"
            " (images under 32 px are upscaled to 32 px for the corruption and brought back)."
        )
    return text


def _clean_table(rows: list[Row], series: list[Series]) -> str:
    body = [[s.label, *metric_cells(rows, s, is_clean, ("top1", "top5", "nll", "ece"))] for s in series]
    return markdown_table(["model", "top-1", "top-5", "NLL", "ECE"], body)


# The uncertainty columns of the calibration table: (row key, header), clean and at the worst severity.
CALIBRATION_COLUMNS = (
    ("nll", "NLL"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("ece_adaptive", "ECE (equal mass)"),
    ("aurc", "AURC"),
    ("tie_rate", "ties"),
)
WORST_SEVERITY_COLUMNS = (("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"), ("aurc", "AURC"))


OOD_TEXT = (
    "Clean models, each read out as in the grid, scoring the in-distribution test images against an OOD set of as "
    "many images (OOD is the positive class; the Diffusion Classifier: its test subset and as many OOD images, "
    "scored by its probabilities at the fitted λ, since at λ = 1 they are nearly uniform): AUROC and FPR at 95% of "
    "in-distribution images accepted, for the maximum-probability score (msp: 1 − max p), the predictive entropy, "
    "and the method's own score where it has one (energy: −logsumexp of the twin's or plain ResNet's logits; "
    "wander: how far DiDiCM's CP or CL distribution moves beyond the distance it covers; lowest_error: the "
    "Diffusion Classifier's best class's mean noise-prediction error); mean ± std over seeds."
)
NATIVE_OOD_SCORES = ("energy", "wander", "lowest_error")


def _ood_table(rows: list[Row], series: list[Series]) -> str | None:
    """Per series and OOD set: AUROC and FPR95 of msp, AUROC of entropy and of the native score (None when no row
    has OOD results)."""
    flat = [{**r, **_flat_ood(r["ood"])} for r in rows if r.get("ood")]
    specs = list(dict.fromkeys(spec for r in flat for spec in r["ood"]))
    if not specs:
        return None
    columns = [("msp", "ood_auroc", "AUROC (msp)"), ("msp", "ood_fpr95", "FPR95 (msp)"),
               ("entropy", "ood_auroc", "AUROC (entropy)"), ("native", "ood_auroc", "AUROC (native)")]  # fmt: skip
    header = ["model", "native score", *[f"{spec}: {name}" for spec in specs for _, _, name in columns]]
    keys = tuple(f"ood/{spec}/{score}/{metric}" for spec in specs for score, metric, _ in columns)
    body = []
    for s in series:
        mine = [r for r in flat if s.matches(r)]
        if mine:
            native = next((n for n in NATIVE_OOD_SCORES if n in next(iter(mine[0]["ood"].values()))), None)
            body.append([s.label, native or "–", *metric_cells(flat, s, is_clean, keys)])
    return markdown_table(header, body)


def _flat_ood(ood: dict) -> dict:
    """``ood/SPEC/SCORE/METRIC`` keys of a row's OOD results; a method's own score also as ``SCORE`` = native."""
    return {
        f"ood/{spec}/{name}/{metric}": value
        for spec, by_score in ood.items()
        for score, metrics in by_score.items()
        for name in ((score, "native") if score in NATIVE_OOD_SCORES else (score,))
        for metric, value in metrics.items()
    }


RELATIVE_CE_TEXT = (
    "CE = mean over corruptions of Σ_severities error / Σ_severities the plain ResNet's error (errors averaged over "
    "seeds): Hendrycks & Dietterich's corruption error with the plain ResNet in AlexNet's place, so below 1 is more "
    "robust than the plain ResNet. Not ImageNet's AlexNet-normalised mCE."
)


def _relative_corruption_table(rows: list[Row], series: list[Series]) -> str | None:
    """Each series' :func:`relative_corruption_error` against the plain ResNet (None without one or without
    corruptions)."""
    reference = next((s for s in series if s.contender == "plain" and s.readout == "softmax"), None)
    if reference is None or not any(r["kind"] == "corruption" for r in rows):
        return None
    body = []
    for s in series:
        ce = relative_corruption_error(rows, s, reference)
        body.append([s.label, "–" if ce is None else f"{ce:.3f}"])
    return markdown_table(["model", "CE relative to the plain ResNet"], body)


TEMPERATURE_TEXT = (
    "Each model's probabilities rescaled by one temperature fitted by NLL on its clean validation images with the "
    "same readout (p ∝ p^(1/T); the Diffusion Classifier: softmax(−λ·error), λ fitted the same way), then "
    "measured on the test images of every condition: calibration compared on equal terms. Top-1 does not change. "
    "T > 1 means the raw output was overconfident."
)


def _temperature_table(rows: list[Row], series: list[Series]) -> str:
    """The ``post_*`` metrics of :data:`CALIBRATION_COLUMNS` (clean and at the worst severity) and the fitted
    temperature (mean over seeds)."""
    worst = worst_severity(rows)
    clean = tuple(key for key, _ in CALIBRATION_COLUMNS if key != "tie_rate")
    header = ["model", "T (λ for DC)", *[f"clean {name}" for key, name in CALIBRATION_COLUMNS if key in clean]]
    if worst:
        header += [f"severity {worst}: {name}" for _, name in WORST_SEVERITY_COLUMNS]
    body = []
    for s in series:
        cells = metric_cells(rows, s, is_clean, ("temperature",)) + metric_cells(
            rows, s, is_clean, tuple(f"post_{k}" for k in clean)
        )
        if worst:
            cells += metric_cells(rows, s, at_severity(worst), tuple(f"post_{k}" for k, _ in WORST_SEVERITY_COLUMNS))
        body.append([s.label, *cells])
    return markdown_table(header, body)


def _calibration_table(rows: list[Row], series: list[Series]) -> str:
    """Proper scores (NLL, Brier), calibration (ECE over 15 equal-width and 15 equal-mass bins), selective risk
    (AURC) and the rate of exact ties at the top (rows argmax breaks by class index), clean and at the worst
    severity. A cell is "–" where the rows predate a metric."""
    worst = worst_severity(rows)
    header = ["model", *[f"clean {name}" for _, name in CALIBRATION_COLUMNS]]
    if worst:
        header += [f"severity {worst}: {name}" for _, name in WORST_SEVERITY_COLUMNS]
    body = []
    for s in series:
        cells = metric_cells(rows, s, is_clean, tuple(key for key, _ in CALIBRATION_COLUMNS))
        if worst:
            cells += metric_cells(rows, s, at_severity(worst), tuple(key for key, _ in WORST_SEVERITY_COLUMNS))
        body.append([s.label, *cells])
    return markdown_table(header, body)


# A curve has plateaued when its last quarter beats the best before it by less than this: one percentage point,
# about one standard error of a validation accuracy near 0.97 on the 400 held-out images of mnist5k.
PLATEAU_GAIN = 0.01


def plateau_gain(values: list[float]) -> float | None:
    """How much the best value of the last quarter of a curve beats the best before it (None under 4 points).
    Below :data:`PLATEAU_GAIN` the curve has plateaued: more epochs would not have bought much."""
    if len(values) < 4:
        return None
    tail = max(1, len(values) // 4)
    return max(values[-tail:]) - max(values[:-tail])


def _budget_text(curves: list[Curve], lineup: Lineup | None = None) -> str:
    body = []
    for curve in sorted(curves, key=lambda c: c.name):
        rows, last = curve.rows, curve.rows[-1]
        gained = plateau_gain([r["val_top1"] for r in rows])
        body.append(
            [
                curve.name,
                str(int(last["epoch"])),
                f"{last['train_loss']:.4f}",
                f"{last['val_top1']:.3f}",
                "–" if gained is None else f"{gained:+.3f}",
                "–" if gained is None else ("yes" if gained < PLATEAU_GAIN else "**no**"),
                f"{sum(r['seconds'] for r in rows):.0f}",
            ]
        )
    note = (
        "Every trained model (data fractions and low-resolution trainings included; the figure shows the "
        "full-data ones). Validation top-1 after each epoch, on the images held out of the training split "
        "(never the test split): softmax for the standard models, DiDiCM's one-pass readout (its CP readout is "
        f"in the tables above). *Plateau*: the best of the last quarter of epochs beats the best before it by "
        f"less than {PLATEAU_GAIN:g}; a **no** means more epochs would likely have changed that model's numbers."
    )
    table = markdown_table(
        ["model", "epochs", "final loss", "final val top-1", "last-quarter gain", "plateau", "training s"], body
    )
    return note + "\n\n" + table + "\n\n" + _cost_table(curves, lineup)


def _cost_table(curves: list[Curve], lineup: Lineup | None) -> str:
    """Training cost per contender: its budget and the median seconds of one full-data model."""
    body = []
    full = [c for c in curves if c.full_data]
    for key in dict.fromkeys(c.contender for c in full):
        mine = [c for c in full if c.contender == key]
        seconds = sorted(sum(r["seconds"] for r in c.rows) for c in mine)
        contender = lineup.get(key) if lineup else None
        body.append(
            [
                contender.label if contender else key,
                str(int(mine[0].rows[-1]["epoch"])),
                str(len(mine)),
                f"{statistics.median(seconds):.0f}",
                f"{statistics.median(seconds) / max(int(mine[0].rows[-1]['epoch']), 1):.1f}",
            ]
        )
    return "Training cost of one full-data model (median over seeds):\n\n" + markdown_table(
        ["contender", "epochs", "models", "training s", "s per epoch"], body
    )

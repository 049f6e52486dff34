"""``report.md`` and ``plots/*.png`` of a benchmark: the tables of :mod:`diffcls.bench.tables` and the figures of
:mod:`diffcls.bench.plots`, written into the output folder (see :mod:`diffcls.bench.stats` for what each number
is)."""

from __future__ import annotations

from pathlib import Path

from diffcls.bench.grid import BenchPreset
from diffcls.bench.plots import (
    plot_accuracy_vs_nfe,
    plot_accuracy_vs_severity,
    plot_gain_vs_difficulty,
    plot_ood_histograms,
    plot_reliability,
    plot_risk_coverage,
    plot_training_curves,
    plot_trajectories,
)
from diffcls.bench.stats import Curve, Row
from diffcls.bench.tables import report_markdown
from diffcls.runtime.io import atomic_write_text


def write_report(
    rows: list[Row],
    trajectories: dict,
    out: Path,
    preset: BenchPreset,
    data: str,
    curves: list[Curve],
    seconds: float,
    command: str | None,
    corruption_set: str | None = None,
) -> dict:
    """Write ``report.md`` and ``plots/*.png`` into ``out``; returns ``{"report": path, "plots": [paths]}``."""
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = {
        "accuracy_vs_severity": plot_accuracy_vs_severity(rows, plots_dir / "accuracy_vs_severity.png", preset),
        "gain_vs_difficulty": plot_gain_vs_difficulty(rows, plots_dir / "gain_vs_difficulty.png", preset),
        "accuracy_vs_nfe": plot_accuracy_vs_nfe(rows, plots_dir / "accuracy_vs_nfe.png", preset),
        "cp_trajectories": plot_trajectories(trajectories, plots_dir / "cp_trajectories.png", preset),
        "reliability": plot_reliability(rows, plots_dir / "reliability.png", preset),
        "reliability_after_temperature": plot_reliability(
            rows, plots_dir / "reliability_after_temperature.png", preset, bins_key="post_reliability"
        ),
        "risk_coverage": plot_risk_coverage(rows, plots_dir / "risk_coverage.png", preset),
        "ood_histograms": plot_ood_histograms(rows, plots_dir / "ood_histograms.png", preset),
        "training_curves": plot_training_curves(curves, plots_dir / "training_curves.png", preset),
    }
    plots = {name: path for name, path in plots.items() if path}
    text = report_markdown(rows, preset, data, seconds, command, plots, curves, corruption_set)
    path = out / "report.md"
    atomic_write_text(path, text)
    return {"report": path, "plots": list(plots.values())}

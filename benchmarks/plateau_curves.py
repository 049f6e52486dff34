"""Where does each contender's validation curve flatten? The evidence behind the benchmark's per-contender budgets.

Reads the ``metrics.csv`` of long training runs (one folder per contender, trained with a held-out validation
split) and prints, for each run and each candidate budget of E epochs, the last-quarter gain of the curve's first E
epochs (the report's plateau rule, :func:`diffcls.bench.tables.plateau_gain`), plus the best and final validation
top-1 and the seconds per epoch. With ``--plot PATH`` it also draws the curves (the report's training-curve figure).

    .venv/bin/python benchmarks/plateau_curves.py standard=/tmp/plateau/twin-m30 didicm=/tmp/plateau/didicm-m40 \\
        --budgets 10 15 25 40 --plot docs/benchmarks/plateau-mnist5k.png

A prefix of a longer cosine run is not the same training as a run of that length (its learning rate is still
high at epoch E), so the table is a guide to where the curve flattens; the benchmark report's own plateau column
checks the budgets actually run.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from pathlib import Path

from _harness import command_line, markdown_table  # benchmarks/_harness.py
from diffcls.bench.runner import _epoch_rows
from diffcls.bench.stats import Curve
from diffcls.bench.tables import PLATEAU_GAIN, plateau_gain


def table(runs: dict[str, Path], budgets: list[int]) -> str:
    body = []
    for key, folder in runs.items():
        rows = _epoch_rows(folder)
        curve = [r["val_top1"] for r in rows]
        gains = []
        for budget in budgets:
            gained = plateau_gain(curve[:budget]) if budget <= len(curve) else None
            gains.append("–" if gained is None else f"{gained:+.3f}" + (" ✓" if gained < PLATEAU_GAIN else ""))
        body.append(
            [
                key,
                str(len(rows)),
                f"{max(curve):.3f} (epoch {curve.index(max(curve)) + 1})",
                f"{curve[-1]:.3f}",
                f"{statistics.median(r['seconds'] for r in rows):.1f}",
                *gains,
            ]
        )
    head = ["run", "epochs", "best val top-1", "final", "s/epoch (median)"]
    return markdown_table(head + [f"gain, first {b}" for b in budgets], body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="CONTENDER=FOLDER", help="a training folder per contender key")
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 15, 25, 40])
    ap.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = ap.parse_args()
    runs = {key: Path(folder) for key, _, folder in (r.partition("=") for r in args.runs)}
    print(f"`{command_line()}`, {datetime.date.today()}")
    print()
    print(table(runs, args.budgets))
    print(
        f"\nGain: the best validation top-1 of the last quarter of the first E epochs minus the best before it; "
        f"✓ marks a plateau (gain < {PLATEAU_GAIN:g})."
    )
    if args.plot:
        from diffcls.bench.plots import plot_training_curves

        curves = [Curve(folder.name, key, _epoch_rows(folder)) for key, folder in runs.items()]
        print(f"plot: {plot_training_curves(curves, args.plot)}")


if __name__ == "__main__":
    main()

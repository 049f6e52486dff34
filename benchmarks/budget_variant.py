"""Was a benchmark's contender short of its plateau? Retrain one of its models with a longer budget and compare.

    python benchmarks/budget_variant.py --bench docs/benchmarks/fashion-mnist --models /work/bench-runs/fashion-full \
        --model didicm-r1-s1 --epochs 160 --output runs/budget-variant

A *labelled variant* beside a finished ``diffcls bench`` grid, never a replacement of it: the grid's budgets were
fixed before its run, and this script answers whether one of them was too short. It reads the model's recorded
training options (its ``config.json``), changes only ``epochs`` (the cosine schedule stretches with it), trains a
fresh model into ``--output`` (resumable), evaluates it with ``diffcls eval`` on the benchmark's own test images
(its ``eval_limit``, corruptions from its cache; every command printed, a finished one reused) and prints, per
condition, the grid model's top-1 (from the benchmark's rows), the variant's, and the same seed's standard twin;
then the validation curves' plateau check for both budgets (``diffcls.bench.tables.plateau_gain``).

By default the conditions are clean and every corruption of the benchmark at its worst severity; the readout is the
grid's (DiDiCM: CP-8, the library's ``euler-lower``; the twin and the plain ResNet: softmax). Retrain the twin of the
same seed with the same factor as the control: does a longer budget help DiDiCM more than it helps the twin?
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from _harness import bench_eval  # benchmarks/_harness.py
from diffcls.bench.stats import worst_severity
from diffcls.bench.tables import PLATEAU_GAIN, plateau_gain
from headline import load_rows  # benchmarks/headline.py: a running benchmark's rows, a torn last line skipped

# The grid's readout of each contender: (diffcls eval flags, the rows' label of that readout).
READOUTS = {
    "didicm": (["--sampler", "cp", "--steps", "8", "--cp-update", "euler-lower"], "CP-8 lower-clamp"),
    "standard": ([], "softmax"),
    "plain": ([], "softmax"),
}


def train_variant(recorded: dict, epochs: int, output: Path) -> Path:
    """Train a grid model's ``recorded`` options (its config's ``"train"`` block) for ``epochs`` epochs into
    ``output`` (resumes a cut-short run)."""
    from diffcls.methods import train
    from diffcls.runtime.checkpoint import STATE_NAME
    from diffcls.train.config import TrainConfig

    config = dataclasses.replace(TrainConfig.from_dict(recorded), epochs=epochs, output=str(output))
    if len(curve(output)) >= epochs and (output / "model.safetensors").is_file():
        return output
    print(f"training for {epochs} epochs (the grid: {recorded['epochs']}) into {output}", flush=True)
    train(config, resume=(output / STATE_NAME).is_file())
    return output


def curve(folder: Path) -> list[float]:
    """Validation top-1 per epoch from ``metrics.csv`` ([] when absent)."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    return [float(r["val_top1"]) for r in csv.DictReader(path.open()) if r.get("val_top1") not in (None, "")]


def grid_top1(rows: list[dict], contender: str, readout: str, seed: int, condition: str) -> float | None:
    """The full-data grid row's top-1 for ``condition`` ("clean" or "name/severity"), None when missing."""
    for r in rows:
        if r["contender"] != contender or r["readout"] != readout or r["seed"] != seed or r["data_ratio"] != 1.0:
            continue
        if condition == "clean" and r["kind"] == "clean":
            return r["top1"]
        if r["kind"] == "corruption" and f"{r['corruption']}/{r['severity']}" == condition:
            return r["top1"]
    return None


def table_row(label: str, values: dict[str, float | None]) -> str:
    """A markdown row: the twin's, the grid model's and the variant's top-1, and the variant's gains over both."""
    cells = ["–" if v is None else f"{v:.3f}" for v in values.values()]
    variant = values["variant"]
    deltas = ["–" if v is None else f"{variant - v:+.3f}" for v in (values["grid"], values["twin"])]
    return f"| {label} | {' | '.join(cells)} | {' | '.join(deltas)} |"


def plateau_text(values: list[float]) -> str:
    gained = plateau_gain(values)
    if gained is None:
        return "–"
    verdict = "plateaued" if gained < PLATEAU_GAIN else "still rising"
    return f"{len(values)} epochs, last quarter {gained:+.3f} over the best before ({verdict})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, required=True, help="the benchmark folder (bench.json, rows.jsonl)")
    parser.add_argument("--models", type=Path, help="the folder holding models/ and cache/ (default: --bench)")
    parser.add_argument("--model", default="didicm-r1-s1", help="the grid model to retrain (a folder of models/)")
    parser.add_argument("--epochs", type=int, required=True, help="the variant's budget")
    parser.add_argument("--conditions", help="comma-separated, e.g. clean,fog/5 (default: clean + worst severity)")
    parser.add_argument("--output", type=Path, default=Path("runs/budget-variant"))
    args = parser.parse_args(argv)

    if not (args.bench / "bench.json").is_file():
        sys.exit(f"error: {args.bench} is not a benchmark folder (no bench.json; give diffcls bench's --output)")
    bench = json.loads((args.bench / "bench.json").read_text())
    data, limit = bench["data"], bench["preset"]["eval_limit"]
    root = args.models or args.bench
    grid_model = root / "models" / args.model
    if not (grid_model / "config.json").is_file():
        sys.exit(f"error: {grid_model} is not a trained model folder (give --models, the run that trained it)")
    rows = load_rows(args.bench)
    recorded = json.loads((grid_model / "config.json").read_text())["train"]
    contender, seed = args.model.split("-")[0], recorded["seed"]
    if contender not in READOUTS:
        sys.exit(f"error: --model {args.model}: not a model of a contender this script knows ({', '.join(READOUTS)})")
    flags, readout = READOUTS[contender]
    if args.conditions:
        conditions = args.conditions.split(",")
    else:
        worst = worst_severity(rows)
        names = sorted({r["corruption"] for r in rows if r["kind"] == "corruption"})
        conditions = ["clean", *[f"{name}/{worst}" for name in names]]

    variant = train_variant(recorded, args.epochs, args.output / "model")
    print(f"\n{data}, {args.model} ({recorded['epochs']} epochs, grid) against {args.epochs} epochs (variant), "
          f"{limit} test images, readout {readout}\n")  # fmt: skip
    print(f"| condition | twin (seed {seed}) | grid, {recorded['epochs']} epochs | variant, {args.epochs} epochs "
          "| variant − grid | variant − twin |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    families = {r["corruption"]: r["family"] for r in rows if r["kind"] == "corruption"}
    groups: dict[str, list[dict]] = {}  # "all" and each family: the corruption rows' (twin, grid, variant) top-1
    for condition in conditions:
        results_file = args.output / f"{condition.replace('/', '-')}.json"
        results = bench_eval(variant, data, limit, condition, flags, root / "cache", results_file)
        result = json.loads(results.read_text())
        twin = grid_top1(rows, "standard", "softmax", seed, condition)
        grid = grid_top1(rows, contender, readout, seed, condition)
        values = {"twin": twin, "grid": grid, "variant": result["top1"]}
        if condition != "clean" and None not in values.values():
            for group in ("all", families.get(condition.split("/")[0], "other")):
                groups.setdefault(group, []).append(values)
        print(table_row(condition, values))
    for group, members in groups.items():
        means = {key: sum(v[key] for v in members) / len(members) for key in ("twin", "grid", "variant")}
        label = f"mean of {len(members)} corruptions" if group == "all" else f"{group} ({len(members)}), mean"
        print(table_row(label, means))
    print(f"\nvalidation top-1, grid: {plateau_text(curve(grid_model))}")
    print(f"validation top-1, variant: {plateau_text(curve(variant))}")


if __name__ == "__main__":
    main()

"""Was a benchmark's contender short of its plateau? Retrain its models with a longer budget and compare.

    python benchmarks/budget_variant.py --bench docs/benchmarks/fashion-mnist --models /work/bench-runs/fashion-full \
        --model didicm-r1-s0,didicm-r1-s1,didicm-r1-s2 --epochs 160 --output runs/budget-variant

A *labelled variant* beside a finished ``diffcls bench`` grid, never a replacement of it: the grid's budgets were
fixed before its run, and this script answers whether one of them was too short. For each ``--model`` (one folder
of the grid's ``models/`` per training seed) it reads the recorded training options (its ``config.json``), changes
only ``epochs`` (the cosine schedule stretches with it), trains a fresh model into ``--output/MODEL`` (resumable),
evaluates it with ``diffcls eval`` on the benchmark's own test images (its ``eval_limit``, corruptions from its
cache; every command printed, a finished one reused; probabilities saved) and prints, per condition, the grid
model's top-1 (from the benchmark's rows), the variant's, and the same seed's standard twin; then the validation
curves' plateau check for both budgets (``diffcls.bench.tables.plateau_gain``).

It ends with the headline statistics of the report (``benchmarks/headline.py``): mean ± std
over seeds, Δ against the twin and against the grid's budget with whether it lies beyond the seed spread, and the
95% paired-bootstrap interval over test images, for clean, all corruptions at the worst severity and each family.

By default a full-data model is evaluated clean and under every corruption of the benchmark at its worst severity; a
model of the scarce-data or low-resolution protocols (``didicm-r0.05-s0``, ``didicm-r1-16px-s0``: its config's
``data_ratio`` below 1 or ``img_size`` one of the bench's ``low_res``) on the one condition it was trained for, as
in the grid (clean test images, at its own resolution). The readout is the
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
from diffcls.bench.grid import Condition
from diffcls.bench.stats import Series, worst_severity
from diffcls.bench.tables import PLATEAU_GAIN, plateau_gain
from headline import headline, load_rows, print_table  # benchmarks/headline.py

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


def variant_row(grid_row: dict, readout: str, probs, labels) -> dict:
    """A results row of the variant shaped like the grid's row of the same condition and seed (so that
    ``diffcls.bench.stats`` pairs them): its readout label changed, top-1 and per-image outcomes from ``probs``
    (float[N, K], saved by ``diffcls eval``) against ``labels`` (int64[N], the benchmark's test images)."""
    import torch

    from diffcls.inference.metrics import topk_correct

    correct = topk_correct(torch.as_tensor(probs), torch.as_tensor(labels))
    return {
        **{k: grid_row[k] for k in ("contender", "seed", "condition", "kind", "corruption", "family", "severity")},
        "data_ratio": grid_row["data_ratio"],
        "low_res": grid_row.get("low_res"),
        "readout": readout,
        "top1": correct.double().mean().item(),
        "correct": "".join("1" if c else "0" for c in correct.tolist()),
    }


def find_row(rows: list[dict], contender: str, readout: str, seed: int, condition: str) -> dict | None:
    """The grid row of one contender, readout, seed and condition ("clean", "name/severity", "low_res/16",
    "data_ratio/0.05", ...: the condition names the training protocol, so it picks the model too)."""
    for r in rows:
        if (r["contender"], r["readout"], r["seed"], r["condition"]) == (contender, readout, seed, condition):
            return r
    return None


def trained_condition(recorded: dict, preset: dict) -> str | None:
    """The grid condition a model of the scarce-data or low-resolution protocols was trained for ("data_ratio/0.05",
    "data_ratio_eq/0.05", "low_res/16"), from its recorded training options; None for a full-data model."""
    if recorded["data_ratio"] < 1.0:
        kind = "data_ratio_eq" if recorded.get("equal_steps") else "data_ratio"
        return Condition(kind, data_ratio=recorded["data_ratio"]).label
    if recorded["img_size"] in preset.get("low_res", ()):
        return Condition("low_res", low_res=recorded["img_size"]).label
    return None


def run_seed(args, model: str, bench: dict, rows: list[dict], conditions: list[str], labels) -> list[dict]:
    """Train and evaluate the variant of one grid ``model``; print its per-condition table; return its rows."""
    import numpy as np

    root = args.models or args.bench
    grid_model = root / "models" / model
    if not (grid_model / "config.json").is_file():
        sys.exit(f"error: {grid_model} is not a trained model folder (give --models, the run that trained it)")
    recorded = json.loads((grid_model / "config.json").read_text())["train"]
    contender, seed = model.split("-")[0], recorded["seed"]
    if contender not in READOUTS:
        sys.exit(f"error: --model {model}: not a model of a contender this script knows ({', '.join(READOUTS)})")
    flags, readout = READOUTS[contender]
    out = args.output / model
    variant = train_variant(recorded, args.epochs, out / "model")
    data, limit = bench["data"], bench["preset"]["eval_limit"]
    print(f"\n{data}, {model} ({recorded['epochs']} epochs, grid) against {args.epochs} epochs (variant), "
          f"{limit} test images, readout {readout}\n")  # fmt: skip
    print(f"| condition | twin (seed {seed}) | grid, {recorded['epochs']} epochs | variant, {args.epochs} epochs "
          "| variant − grid | variant − twin |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    groups: dict[str, list[dict]] = {}  # "all" and each family: the corruption rows' (twin, grid, variant) top-1
    made = []
    protocol = trained_condition(recorded, bench["preset"])
    for condition in [protocol] if protocol else conditions:
        stem = out / condition.replace("/", "-")
        test_condition = "clean" if protocol else condition  # a protocol's model sees the clean test images
        bench_eval(variant, data, limit, test_condition, flags, root / "cache", stem.with_suffix(".json"),
                   save_probs=stem.with_suffix(".npy"))  # fmt: skip
        grid = find_row(rows, contender, readout, seed, condition)
        twin = find_row(rows, "standard", "softmax", seed, condition)
        if grid is None:
            print(f"| {condition} | – | – | (no grid row: not evaluated) | – | – |")
            continue
        made.append(variant_row(grid, f"{readout}, {args.epochs} epochs", np.load(stem.with_suffix(".npy")), labels))
        values = {"twin": twin and twin["top1"], "grid": grid["top1"], "variant": made[-1]["top1"]}
        if grid["kind"] == "corruption" and None not in values.values():
            for group in ("all", grid["family"] or "other"):
                groups.setdefault(group, []).append(values)
        print(table_row(condition, values))
    for group, members in groups.items():
        means = {key: sum(v[key] for v in members) / len(members) for key in ("twin", "grid", "variant")}
        label = f"mean of {len(members)} corruptions" if group == "all" else f"{group} ({len(members)}), mean"
        print(table_row(label, means))
    print(f"\nvalidation top-1, grid: {plateau_text(curve(grid_model))}")
    print(f"validation top-1, variant: {plateau_text(curve(variant))}")
    return made


def print_summary(rows: list[dict], variant_rows: list[dict], grid_readout: str) -> None:
    """Mean ± std over seeds and Δ (seed spread, paired bootstrap) of the variant against the twin and the grid,
    on the conditions and seeds the variant was evaluated on."""
    first = variant_rows[0]
    evaluated = {(r["seed"], r["condition"]) for r in variant_rows}
    paired = [r for r in rows if (r["seed"], r["condition"]) in evaluated]
    paired += variant_rows
    variant = Series(first["contender"], first["readout"], f"{first['contender']} {first['readout']}")
    seeds = sorted({s for s, _ in evaluated})
    for base in (Series("standard", "softmax", "standard twin"), Series(first["contender"], grid_readout, "the grid")):
        print(f"\n### {variant.label} against {base.label} (seeds {', '.join(map(str, seeds))})\n")
        print_table(headline(paired, base, variant), base, variant)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, required=True, help="the benchmark folder (bench.json, rows.jsonl)")
    parser.add_argument("--models", type=Path, help="the folder holding models/ and cache/ (default: --bench)")
    parser.add_argument(
        "--model", default="didicm-r1-s1", help="the grid model(s) to retrain, comma-separated (folders of models/)"
    )
    parser.add_argument("--epochs", type=int, required=True, help="the variant's budget")
    parser.add_argument("--conditions", help="comma-separated, e.g. clean,fog/5 (default: clean + worst severity)")
    parser.add_argument("--output", type=Path, default=Path("runs/budget-variant"), help="one folder per --model")
    args = parser.parse_args(argv)

    if not (args.bench / "bench.json").is_file():
        sys.exit(f"error: {args.bench} is not a benchmark folder (no bench.json; give diffcls bench's --output)")
    bench = json.loads((args.bench / "bench.json").read_text())
    rows = load_rows(args.bench)
    if args.conditions:
        conditions = args.conditions.split(",")
    else:
        worst = worst_severity(rows)
        names = sorted({r["corruption"] for r in rows if r["kind"] == "corruption"})
        conditions = ["clean", *[f"{name}/{worst}" for name in names]]
    labels = test_labels(bench)
    made = [row for model in args.model.split(",") for row in run_seed(args, model, bench, rows, conditions, labels)]
    if made:
        print_summary(rows, made, READOUTS[made[0]["contender"]][1])


def test_labels(bench: dict):
    """int64[N]: the labels of the benchmark's test images, in the order ``diffcls eval --limit`` uses."""
    from diffcls.data.sources import load_source
    from diffcls.eval.evaluate import select_split

    return select_split(load_source(bench["data"]), "test", bench["preset"]["eval_limit"]).labels


if __name__ == "__main__":
    main()

"""How close does each method's probability come to the true posterior? The standard twin, DiDiCM (CP-8 with the
library's and the reference's Euler step, and one-pass) and the Diffusion Classifier on ``gaussmix``, whose Bayes
posterior is exact (``diffcls.data.gaussmix``), before and after temperature scaling on the validation split.

    python benchmarks/gaussmix_posterior.py --output runs/gaussmix [--data gaussmix] [--seed 0]
    python benchmarks/gaussmix_posterior.py --summarise runs/gaussmix,runs/gaussmix-s1,runs/gaussmix-s2

Trains three models with the commands it prints (a finished model folder is reused), then the twin and DiDiCM
again with the number of epochs at which their validation top-1 peaked in that run (the budget chosen on the
validation split; the cosine schedule then ends there), evaluates each on the whole
test split with ``diffcls eval --calibrate`` (T fitted by NLL on the held-out validation images; the Diffusion
Classifier's λ is fitted the same way with ``--fit-temperature`` on validation images, and "before" is λ = 1), and
prints a markdown table: top-1, NLL, Brier, ECE, KL(posterior ‖ model) before and after, the fitted temperature, the
Bayes classifier's own row, and whether each training curve reached its plateau (last quarter of the epochs gains
< 0.01 validation top-1).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from diffcls.bench.tables import PLATEAU_GAIN, plateau_gain

TRAININGS = {  # name: (method, model, epochs, extra flags)
    "twin": ("standard", "didirn_small", 30, []),
    "didicm": ("didicm", "didirn_small", 60, []),
    "ddpm": ("ddpm", "unet_small", 40, ["-b", "32", "--lr", "1e-3", "--ema-decay", "0.995", "--val-images", "50"]),
}
READOUTS = {  # row label: (model, eval flags)
    "standard twin (softmax)": ("twin", []),
    "DiDiCM CP-8 (library: euler-lower)": ("didicm", ["--sampler", "cp", "--steps", "8"]),
    "DiDiCM CP-8 (reference: euler)": ("didicm", ["--sampler", "cp", "--steps", "8", "--cp-update", "euler"]),
    "DiDiCM one-pass": ("didicm", ["--sampler", "onepass"]),
}
DC_SCHEDULE = ["--n-samples", "10,50", "--to-keep", "3,1"]  # adaptive, 220 NFE for 10 classes
DC_CALIBRATION_IMAGES = 200


def run(command: list[str]) -> None:
    print("$ diffcls " + " ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "diffcls.cli", *command], check=True)


def train(name: str, data: str, out: Path, seed: int) -> Path:
    method, model, epochs, extra = TRAININGS[name]
    folder = out / name
    metrics = folder / "metrics.csv"
    if metrics.is_file() and len(metrics.read_text().splitlines()) - 1 >= epochs:
        return folder
    args = ["train", "--data", data, "--method", method, "--model", model, "--img-size", "16", "--epochs", str(epochs)]
    run([*args, "--seed", str(seed), *extra, "--output", str(folder), *(["--resume"] if metrics.is_file() else [])])
    return folder


def best_epoch(folder: Path) -> int:
    """The first epoch with the highest validation top-1 in ``folder``'s metrics.csv."""
    values = [float(r["val_top1"]) for r in csv.DictReader(open(folder / "metrics.csv"))]
    return values.index(max(values)) + 1


def train_for(name: str, epochs: int, data: str, out: Path, seed: int) -> Path:
    """``name``'s recipe with ``epochs`` epochs, in ``out/<name>-e<epochs>``."""
    method, model, _, extra = TRAININGS[name]
    folder = out / f"{name}-e{epochs}"
    if not (folder / "metrics.csv").is_file() or len((folder / "metrics.csv").read_text().splitlines()) - 1 < epochs:
        args = ["train", "--data", data, "--method", method, "--model", model, "--img-size", "16"]
        run([*args, "--epochs", str(epochs), "--seed", str(seed), *extra, "--output", str(folder)])
    return folder


def plateau(folder: Path) -> str:
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    column = "val_top1" if rows[0].get("val_top1") not in (None, "") else None
    if column is None:
        return "–"
    gained = plateau_gain([float(r[column]) for r in rows if r[column] != ""])
    return "–" if gained is None else f"{len(rows)} ep, {gained:+.3f} ({'yes' if gained < PLATEAU_GAIN else 'no'})"


def evaluate(folder: Path, data: str, flags: list[str], results: Path) -> dict:
    if not results.is_file():
        run(
            ["eval", "--checkpoint", str(folder), "--data", data, "--calibrate", *flags, "--results-file", str(results)]
        )
    return json.loads(results.read_text())


def evaluate_dc(folder: Path, data: str, out: Path) -> tuple[dict, dict]:
    """(before: λ = 1, after: λ fitted on validation images) on the whole test split; the per-image errors are
    computed once and read back for the second temperature."""
    common = ["eval", "--checkpoint", str(folder), "--data", data, *DC_SCHEDULE]
    fit, after, before = out / "dc-fit.json", out / "dc-after.json", out / "dc-before.json"
    if not fit.is_file():
        run([*common, "--split", "val", "--limit", str(DC_CALIBRATION_IMAGES), "--fit-temperature",
             "--results-file", str(fit)])  # fmt: skip
    per_image = ["--per-image", str(out / "dc-test.images.jsonl")]
    if not after.is_file():
        run([*common, *per_image, "--results-file", str(after)])
    if not before.is_file():
        run([*common, *per_image, "--temperature", "1", "--results-file", str(before)])
    return json.loads(before.read_text()), json.loads(after.read_text())


def cell(value: float | str | None, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows: list[tuple[str, dict, dict, str]]) -> str:
    head = ["method", "top-1", "NLL", "Brier", "ECE", "KL to Bayes", "T (DC: λ)", "NLL (T)", "Brier (T)", "ECE (T)",
            "KL to Bayes (T)", "ms/image", "plateau (val)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r, post, curve in rows:
        values = [r["top1"], r["nll"], r["brier"], r["ece"], r.get("kl_to_bayes")]
        values += [post.get("T"), post.get("nll"), post.get("brier"), post.get("ece"), post.get("kl_to_bayes")]
        cells = [cell(v) for v in values] + [cell(r.get("ms_per_image"), 2), curve]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


SUMMARY_ROWS = {  # results file stem: row label of the seed summary
    "standard-twin": "standard twin (softmax), full budget",
    "didicm-cp-8": "DiDiCM CP-8 (library: euler-lower), full budget",
    "didicm-one-pass": "DiDiCM one-pass, full budget",
    "standard-twin-val-budget": "standard twin, epochs at its validation peak",
    "didicm-cp-8-val-budget": "DiDiCM CP-8 (library), epochs at its validation peak",
    "didicm-cp-8-ref-val-budget": "DiDiCM CP-8 (reference: euler), epochs at its validation peak",
    "didicm-one-pass-val-budget": "DiDiCM one-pass, epochs at its validation peak",
}


def summarise(outputs: list[Path]) -> str:
    """Mean ± std over the runs in ``outputs`` (one per seed) of top-1, NLL and KL to Bayes, before and after
    temperature scaling (the Diffusion Classifier: λ = 1 and λ fitted)."""
    import statistics

    def stat(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else cell(values[0])

    def read(stem: str) -> list[dict]:
        return [json.loads((o / f"{stem}.json").read_text()) for o in outputs]

    head = ["method", "top-1", "NLL", "KL to Bayes", "NLL (T)", "KL to Bayes (T)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stem, label in SUMMARY_ROWS.items():
        rs = read(stem)
        keys = ("top1", "nll", "kl_to_bayes", "post_nll", "post_kl_to_bayes")
        lines.append(f"| {label} | " + " | ".join(stat([r[k] for r in rs]) for k in keys) + " |")
    before, after = read("dc-before"), read("dc-after")
    cells = [stat([r[k] for r in before]) for k in ("top1", "nll", "kl_to_bayes")]
    cells += [stat([r[k] for r in after]) for k in ("nll", "kl_to_bayes")]
    lines.append("| Diffusion Classifier (adaptive 10→50 t, keep 3→1), λ = 1 / fitted | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/gaussmix")
    parser.add_argument("--data", default="gaussmix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--summarise", default=None, metavar="DIR,DIR,..", help="print mean ± std over finished runs' folders"
    )
    args = parser.parse_args()
    if args.summarise:
        print(summarise([Path(p) for p in args.summarise.split(",")]))
        return
    out = Path(args.output)
    folders = {name: train(name, args.data, out / "models", args.seed) for name in TRAININGS}

    early = {name: train_for(name, best_epoch(folders[name]), args.data, out / "models", args.seed)
             for name in ("twin", "didicm")}  # fmt: skip

    rows = []
    for budget, models in (("", folders), ("val-budget", early)):
        for label, (name, flags) in READOUTS.items():
            slug = label.split("(")[0].strip().replace(" ", "-").lower() + ("-ref" if "reference" in label else "")
            r = evaluate(models[name], args.data, flags, out / f"{slug}{'-' + budget if budget else ''}.json")
            post = {k[5:]: v for k, v in r.items() if k.startswith("post_")} | {"T": r["temperature"]}
            epochs = len((models[name] / "metrics.csv").read_text().splitlines()) - 1
            shown = f"{label}, {epochs} epochs" + (" (peak of validation)" if budget else "")
            rows.append((shown, r, post, plateau(models[name])))
    before, after = evaluate_dc(folders["ddpm"], args.data, out)
    after_post = {k: after[k] for k in ("nll", "brier", "ece", "kl_to_bayes")} | {
        "T": f"λ = {after['temperature']:.0f}"
    }
    rows.append(("Diffusion Classifier (adaptive 10→50 t, keep 3→1)", before, after_post, plateau(folders["ddpm"])))
    bayes = {"top1": before["bayes_top1"], "nll": before["bayes_nll"], "brier": None, "ece": None, "kl_to_bayes": 0.0}
    rows.append(("Bayes posterior (exact)", bayes, {}, "–"))
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

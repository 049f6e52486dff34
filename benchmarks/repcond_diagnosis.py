"""Why does rep-conditioned pretraining hurt Diffusion Classifier Zero? The experiments that tell the causes apart
(issue 19): what r carries, how the tuning arms start, and how noisy one noise draw is.

    python benchmarks/repcond_diagnosis.py --output runs/repcond-diag [--seed 0] [--draws 8] [--fractions 0.1,0.01]

Pretrains a rep-conditioned DiT and an unconditional one with the recipe of docs/results.md (a finished folder is
reused), then prints, as markdown:

1. r statistics of the rep-conditioned encoder on the held-out validation images (spread across images,
   class-mean distances against the distance of random codes) and its held-out denoising loss against the
   unconditional DiT's (the leakage ratio);
2. linear probes at 10% and 1% of the labels: on r, on a randomly initialised encoder's r, and on the raw pixels;
3. DC Zero after tuning each arm at 10% and 1% of the labels, one change at a time:
   rep-cond with class-mean codes (the default), with those codes spread as far apart as random ones, with random
   codes, its trunk alone (projections zeroed, random codes: tuned exactly as the unconditional DiT is), the
   unconditional DiT and a random DiT (scratch). t is chosen by the t-sweep on the held-out images; the test split
   is scored at that t with one noise draw (the paper) and with ``--draws`` draws averaged.

Every command it runs is printed first (``$ diffcls ...``).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

from repcond_comparison import cached, percent

COMMON = ["--data", "mnist5k", "--img-size", "16", "--val-holdout", "200"]
PRETRAININGS = {  # folder: (method, epochs)
    "pre": ("repcond-pretrain", 10),
    "unc": ("uncond-pretrain", 10),
    "rnd": ("uncond-pretrain", 0),  # a random DiT: tuning from it is training from scratch
    "pre-e0": ("repcond-pretrain", 0),  # a random encoder, for the probe baseline
}
ARMS = {  # label: (pretraining folder, extra tuning flags)
    "rep-cond, class-mean codes (default)": ("pre", []),
    "rep-cond, class-mean codes spread like random ones": ("pre", ["--label-init", "class-mean-rescaled"]),
    "rep-cond, random codes": ("pre", ["--label-init", "random"]),
    "rep-cond trunk alone (projections zeroed, random codes)": ("pre", ["--label-init", "random", "--reset-injection"]),
    "unconditional DiT (random codes)": ("unc", []),
    "scratch (random DiT, random codes)": ("rnd", []),
}
FRACTIONS = {0.1: (60, ["-b", "64"]), 0.01: (100, ["-b", "16"])}  # label fraction: (epochs, flags), as the docs


def run(command: list[str]) -> None:
    print("$ diffcls " + " ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "diffcls.cli", *command], check=True)


def finished(folder: Path, epochs: int) -> bool:
    metrics = folder / "metrics.csv"
    return (folder / "model.safetensors").is_file() and (
        epochs == 0 or (metrics.is_file() and len(metrics.read_text().splitlines()) - 1 >= epochs)
    )


def train(folder: Path, args: list[str], epochs: int, seed: int) -> Path:
    if not finished(folder, epochs):
        run(["train", *args, *COMMON, "--epochs", str(epochs), "--seed", str(seed), "--output", str(folder)])
    return folder


def dc_zero(folder: Path, out: Path, draws: int) -> dict:
    """Top-1 and macro F1 at the t chosen on the held-out images, with one draw and with ``draws`` draws."""
    one, many = out / f"{folder.name}.json", out / f"{folder.name}-draws{draws}.json"
    if not cached(one, folder):
        run(["eval", "--checkpoint", str(folder), "--data", "mnist5k", "--t-sweep", "--results-file", str(one)])
    first = json.loads(one.read_text())
    t = first["timesteps"][0]
    if not cached(many, folder):
        flags = ["--timesteps", str(t), "--noise-draws", str(draws)]
        run(["eval", "--checkpoint", str(folder), "--data", "mnist5k", *flags, "--results-file", str(many)])
    second = json.loads(many.read_text())
    return {"t": t, "top1": first["top1"], "f1": first["f1_macro"], "top1_draws": second["top1"],
            "f1_draws": second["f1_macro"]}  # fmt: skip


def last_val_loss(folder: Path) -> float:
    return float(list(csv.DictReader(open(folder / "metrics.csv")))[-1]["val_loss"])


def r_section(models: Path) -> list[str]:
    from diffcls.repcond import leakage_check, load_checkpoint, representation_statistics, representations
    from diffcls.repcond.evaluate import _latents, select_split

    lines = ["| encoder | |r| | spread across images | class-mean distance min / mean | random codes' distance "
             "| between / within class variance |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, label in (("pre", "rep-cond, 10 epochs"), ("pre-e0", "random init")):
        loaded = load_checkpoint(models / name)
        images, k = select_split(loaded, None, "val")
        z0, labels = _latents(loaded, images, "cpu")
        s = representation_statistics(representations(loaded.model.condition, z0), labels, k)
        lines.append(f"| {label} | {s['norm']:.3f} | {s['spread']:.4f} | {s['class_mean_distance_min']:.4f} / "
                     f"{s['class_mean_distance_mean']:.4f} | {s['random_code_distance']:.1f} | "
                     f"{s['between_within']:.3f} |")  # fmt: skip
    leak = leakage_check(models / "pre", models / "unc")
    lines += ["", f"Held-out denoising loss (last epoch, fixed t and noise): rep-cond {leak['repcond_loss']:.4f}, "
              f"unconditional {leak['uncond_loss']:.4f}, ratio {leak['ratio']:.3f}; r holds {leak['r_values']} of z0's "
              f"{leak['z0_values']} values per image (leak: {leak['leak']})."]  # fmt: skip
    return lines


def probe_section(models: Path, fractions: list[float]) -> list[str]:
    from diffcls.data import data_ratio_indices, subset_split
    from diffcls.repcond import linear_probe, load_checkpoint, probe_encoder
    from diffcls.repcond.evaluate import _latents, select_split

    loaded = load_checkpoint(models / "unc")
    train_all, _ = select_split(loaded, None, "train")
    test, k = select_split(loaded, None, "test")
    z_test, y_test = _latents(loaded, test, "cpu")
    head = ["features"] + [c for f in fractions for c in (f"{percent(f)} labels: top-1", "macro F1")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows: dict[str, list[str]] = {"r of the rep-cond encoder": [], "r of a random encoder": [], "raw pixels": []}
    for fraction in fractions:
        for name, label in (("pre", "r of the rep-cond encoder"), ("pre-e0", "r of a random encoder")):
            p = probe_encoder(models / name, data_ratio=fraction)
            rows[label] += [f"{p['accuracy']:.3f}", f"{p['f1_macro']:.3f}"]
        train = subset_split(train_all, data_ratio_indices(train_all.labels, fraction))
        z_train, y_train = _latents(loaded, train, "cpu")
        p = linear_probe(z_train.flatten(1), y_train, z_test.flatten(1), y_test, k)
        rows["raw pixels"] += [f"{p['accuracy']:.3f}", f"{p['f1_macro']:.3f}"]
    return lines + [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/repcond-diag")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=8, help="noise draws averaged at the chosen t")
    parser.add_argument("--fractions", default="0.1,0.01", help="label fractions to tune at (of 0.1, 0.01)")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    if unknown := [f for f in fractions if f not in FRACTIONS]:
        parser.error(f"--fractions: no tuning recipe for {unknown}; choose from {list(FRACTIONS)}")
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    out, models = Path(args.output), Path(args.output) / "models"
    for name, (method, epochs) in PRETRAININGS.items():
        train(models / name, ["--method", method, "--model", "dit_small"], epochs, args.seed)
    results = {}
    for fraction in fractions:
        epochs, flags = FRACTIONS[fraction]
        for label, (source, extra) in ARMS.items():
            slug = "-".join(w for w in label.split(" (")[0].replace(",", "").split() if w.isalnum())
            folder = models / f"tune-{slug}-{fraction}"
            tune = ["--method", "repcond-tune", "--pretrained", str(models / source), "--data-ratio", str(fraction)]
            train(folder, [*tune, *flags, *extra], epochs, args.seed)
            results[(label, fraction)] = dc_zero(folder, out, args.draws)
    print("\n## r of the rep-conditioned encoder (held-out images)\n")
    print("\n".join(r_section(models)))
    print("\n## Linear probes (test split)\n")
    print("\n".join(probe_section(models, fractions)))
    print(f"\n## DC Zero after tuning (test split; t chosen on the held-out images; 1 and {args.draws} noise draws)\n")
    per_fraction = ["t", "top-1", f"top-1 ({args.draws} draws)", "macro F1"]
    head = ["arm"] + [f"{percent(f)}: {c}" if c == "t" else c for f in fractions for c in per_fraction]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for label in ARMS:
        cells = []
        for fraction in fractions:
            r = results[(label, fraction)]
            cells += [str(r["t"]), f"{r['top1']:.3f}", f"{r['top1_draws']:.3f}", f"{r['f1']:.3f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    by_arm = {f"{label} @ {fraction}": r for (label, fraction), r in results.items()}
    (out / f"diagnosis-{args.fractions}.json").write_text(json.dumps(by_arm, indent=1))


if __name__ == "__main__":
    main()

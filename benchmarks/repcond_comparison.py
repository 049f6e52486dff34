"""Does a representation that carries the image make generative pretraining useful for DC Zero? (issue 19)

    python benchmarks/repcond_comparison.py --output runs/repcond-cmp [--seeds 0,1,2] [--r-tokens 4] \
        [--pretrain-epochs 20] [--draws 8] [--figures docs/repcond] [--only-pretraining] \
        [--fractions 0.1,0.01] [--arms pre-random,pre-class-mean,unc-random,rnd-random,twin] [--budget-scale 1,2] \
        [--val-every 10]

Per seed, with the recipe of docs/results.md (mnist5k at 16 px, pixel space, ``dit_small``, 200 training images
held out for validation and the t-sweep), it trains (a finished folder is reused; every command is printed):

* a rep-conditioned DiT with a **spatial r** (``--r-tokens C --decode-injection input``: C values per token,
  decoded to a latent-shaped map added before the denoiser and injected at every block), an unconditional DiT of
  the same size and budget, and a random DiT (scratch);
* each tuned with labels at 10% and 1% of the training images, **the same way**: label codes from N(0, 1), the
  pretrained projections kept (zero for the unconditional and scratch arms, which have none); the rep-cond DiT
  also with its codes started at each class's mean r map (the one variable that differs, labelled; the
  validation split, not the test split, says which start is better: the t-sweep's best held-out accuracy);
* DC Zero at the t the t-sweep picks on the held-out images, with one noise draw (the paper) and ``--draws``;
* the linear probe on r and on the raw pixels; the standard twin (``didirn_small`` at 16 px, ``--equal-steps``).

It prints markdown tables (r's effect: held-out denoising loss at matching t with r, with its null vector and
for the unconditional DiT, the probe against raw pixels, the bottleneck; then the comparison, mean ± std over the
seeds) and, with ``--figures``, writes the loss-by-t plot and sample grids (images generated with r taken from
held-out images, and with the tuned label codes of each class).

The tuning budget: ``--budget-scale 2`` tunes the chosen arms for twice the epochs (folders ``...-x2``);
``--budget-scale 1,2`` tunes each arm at both budgets and, per arm and seed, keeps the one with the higher
validation accuracy (the t-sweep's best on the held-out images; a tie keeps the shorter), so every arm is compared
at the budget the validation split picks for it, never the test split (a cosine schedule flattens every curve at
its end, so the last epochs of one run cannot say whether the budget had reached its plateau). It prints every
budget's row beside the chosen one (with ``--figures``, a plot of both accuracies against the budget per
fraction: ``budgets_1pct.png``, ``budgets_10pct.png``). Tuning validates every ``--val-every`` epochs (10): the
weights do not depend on it (every epoch seeds its own randomness), only the per-epoch curve in ``metrics.csv``
thins out.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from diffcls.runtime.io import write_json

COMMON = ["--data", "mnist5k", "--img-size", "16", "--val-holdout", "200"]
FRACTIONS = {0.1: (60, ["-b", "64"]), 0.01: (100, ["-b", "16"])}  # label fraction: (tuning epochs, flags)
LOSS_TIMESTEPS = list(range(50, 1000, 100))
ARMS = {  # key: (label, pretraining folder, label init); "twin" is the standard twin
    "pre-random": ("rep-cond (spatial r) → tune, random codes", "pre", "random"),
    "pre-class-mean": ("rep-cond (spatial r) → tune, class-mean codes", "pre", "class-mean"),
    "unc-random": ("unconditional → tune", "unc", "random"),
    "rnd-random": ("scratch (random DiT)", "rnd", "random"),
}
TWIN = "standard twin (16 px, --equal-steps)"


def run(command: list[str]) -> None:
    print("$ diffcls " + " ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "diffcls.cli", *command], check=True)


def epochs_done(folder: Path) -> int:
    metrics = folder / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else -1


def train(folder: Path, args: list[str], epochs: int, seed: int, common: list[str] = COMMON) -> Path:
    if not (folder / "model.safetensors").is_file() or (epochs and epochs_done(folder) < epochs):
        run(["train", *args, *common, "--epochs", str(epochs), "--seed", str(seed), "--output", str(folder)])
    return folder


def plateau_note(folder: Path, column: str, lower_is_better: bool) -> str:
    """How much the last quarter of the epochs still moved ``column``: the budget check."""
    values = [float(r[column]) for r in csv.DictReader(open(folder / "metrics.csv")) if r.get(column)]
    if len(values) < 4:
        return "–"
    quarter = values[-max(len(values) // 4, 1) - 1]
    gain = (quarter - values[-1]) if lower_is_better else (values[-1] - quarter)
    return f"{gain:+.4f}"


def cached(results: Path, checkpoint: Path) -> bool:
    """Whether ``results`` holds an evaluation of ``checkpoint`` as it is now: written for this folder (a seed's file
    never stands in for another's) after its weights (a retrained folder is evaluated again)."""
    weights = checkpoint / "model.safetensors"
    return (
        results.is_file()
        and json.loads(results.read_text()).get("checkpoint") == str(checkpoint)
        and results.stat().st_mtime >= weights.stat().st_mtime
    )


def dc_zero(folder: Path, out: Path, draws: int) -> dict:
    one, many = out / f"{folder.name}.json", out / f"{folder.name}-draws{draws}.json"
    probs = one.with_suffix(".npy")
    if not cached(one, folder) or not probs.is_file():
        run(["eval", "--checkpoint", str(folder), "--data", "mnist5k", "--t-sweep", "--results-file", str(one),
             "--save-probs", str(probs)])  # fmt: skip
    first = json.loads(one.read_text())
    if not cached(many, folder):
        flags = ["--timesteps", str(first["timesteps"][0]), "--noise-draws", str(draws)]
        run(["eval", "--checkpoint", str(folder), "--data", "mnist5k", *flags, "--results-file", str(many)])
    second = json.loads(many.read_text())
    return {"top1": first["top1"], "f1": first["f1_macro"], "t": first["timesteps"][0],
            "top1_draws": second["top1"], "f1_draws": second["f1_macro"],
            "val": max(row["accuracy"] for row in first["t_sweep"]), "correct": correct_string(probs)}  # fmt: skip


@functools.cache
def test_labels() -> np.ndarray:
    """int[N]: mnist5k's test labels (read once per run, not once per arm and seed)."""
    from diffcls.data import load_source

    return np.asarray(load_source("mnist5k").test.labels)


def saved_predictions(probs: Path) -> np.ndarray:
    """int[N]: the argmax of an ``eval --save-probs`` file (float32 N×K)."""
    return np.load(probs).argmax(1)


def correct_string(probs: Path) -> str:
    """The saved probabilities' per-image outcomes on mnist5k's test split as "0110…" (the bench rows' form)."""
    return "".join("1" if c else "0" for c in saved_predictions(probs) == test_labels())


def percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def paired_gains(table: dict, fractions: list[float], new: str, bases: list[str]) -> list[str]:
    """Markdown rows: top-1 of ``new`` − each base, per fraction: mean ± std of the per-seed differences, whether
    the seeds' values do not overlap, and the 95% paired-bootstrap interval over test images (seeds pooled)."""
    from diffcls.bench.stats import Series, bootstrap_gain, gain

    rows = [
        {
            "contender": label,
            "readout": "dc-zero",
            "seed": seed,
            "condition": str(fraction),
            "top1": r["top1"],
            "correct": r["correct"],
        }
        for (label, fraction), results in table.items()
        if "correct" in results[0]
        for seed, r in enumerate(results)
    ]  # fmt: skip  (every arm's list runs over the same seeds in order)
    lines = []
    for base in bases:
        for fraction in fractions:
            where = lambda r, f=fraction: r["condition"] == str(f)  # noqa: E731
            a, b = Series(base, "dc-zero", base), Series(new, "dc-zero", new)
            (mean, std, _), beyond = gain(rows, a, b, where)
            low, high = bootstrap_gain(rows, a, b, where) or (float("nan"),) * 2
            lines.append(f"| {base} | {percent(fraction)} | {mean:+.3f} ± {std:.3f} | {beyond} | "
                         f"[{low:+.3f}, {high:+.3f}] |")  # fmt: skip
    return lines


def twin(folder: Path, fraction: float, seed: int, out: Path) -> dict:
    """The standard twin at 16 px with the same label fraction, its test top-1 and macro F1."""
    from torchmetrics.functional.classification import multiclass_f1_score

    args = ["--method", "standard", "--model", "didirn_small", "--data-ratio", str(fraction), "--equal-steps"]
    train(folder, args, 10, seed, ["--data", "mnist5k", "--img-size", "16"])
    results, probs = out / f"{folder.name}.json", out / f"{folder.name}.npy"
    if not cached(results, folder):
        run(["eval", "--checkpoint", str(folder), "--data", "mnist5k", "--results-file", str(results),
             "--save-probs", str(probs)])  # fmt: skip
    labels, predictions = test_labels(), saved_predictions(probs)
    f1 = multiclass_f1_score(torch.as_tensor(predictions), torch.as_tensor(labels), 10, average="macro").item()
    return {"top1": json.loads(results.read_text())["top1"], "f1": f1}


def probes(models: Path, fraction: float) -> dict:
    from diffcls.data import data_ratio_indices, subset_split
    from diffcls.repcond import linear_probe, load_checkpoint, probe_encoder
    from diffcls.repcond.evaluate import _latents, select_split

    r = probe_encoder(models / "pre", data_ratio=fraction)
    loaded = load_checkpoint(models / "unc")
    train_all, _ = select_split(loaded, None, "train")
    test, k = select_split(loaded, None, "test")
    train_split = subset_split(train_all, data_ratio_indices(train_all.labels, fraction))
    (z_train, y_train), (z_test, y_test) = _latents(loaded, train_split, "cpu"), _latents(loaded, test, "cpu")
    raw = linear_probe(z_train.flatten(1), y_train, z_test.flatten(1), y_test, k)
    return {
        "r": {"top1": r["accuracy"], "f1": r["f1_macro"]},
        "pixels": {"top1": raw["accuracy"], "f1": raw["f1_macro"]},
    }


def r_statistics(models: Path) -> dict:
    """:func:`~diffcls.repcond.representation_statistics` of the spatial r on the held-out images."""
    from diffcls.repcond import load_checkpoint, representation_statistics, representations
    from diffcls.repcond.evaluate import _latents, select_split

    pre = load_checkpoint(models / "pre")
    images, k = select_split(pre, None, "val")
    z0, labels = _latents(pre, images, "cpu")
    return representation_statistics(representations(pre.model.condition, z0), labels, k)


def loss_by_t(models: Path) -> dict:
    """Held-out denoising loss at each t: rep-cond with r, with its null vector, and the unconditional DiT."""
    from diffcls.repcond import load_checkpoint
    from diffcls.repcond.evaluate import _latents, select_split
    from diffcls.repcond.sampling import denoising_loss_by_t

    pre, unc = load_checkpoint(models / "pre"), load_checkpoint(models / "unc")
    images, _ = select_split(pre, None, "val")
    z0, _ = _latents(pre, images, "cpu")
    with_r = denoising_loss_by_t(pre.model, z0, z0, pre.alphas_cumprod, LOSS_TIMESTEPS)
    plain = denoising_loss_by_t(unc.model, z0, None, unc.alphas_cumprod, LOSS_TIMESTEPS)
    return {"t": LOSS_TIMESTEPS, "with_r": with_r["loss"], "null_r": with_r["loss_null"], "uncond": plain["loss"]}


def figures(models: Path, tuned: Path, curves: list[dict], where: Path) -> None:
    """loss_by_t.png (mean over seeds) and the sample grids of the first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffcls.repcond import load_checkpoint
    from diffcls.repcond.evaluate import _latents, select_split
    from diffcls.repcond.sampling import sample_latents

    where.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for key, label in (("uncond", "unconditional DiT"), ("null_r", "spatial rep-cond DiT, r dropped"),
                       ("with_r", "spatial rep-cond DiT with r")):  # fmt: skip
        mean = [statistics.mean(c[key][j] for c in curves) for j in range(len(LOSS_TIMESTEPS))]
        ax.plot(LOSS_TIMESTEPS, mean, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("held-out eps MSE")
    ax.set_title(f"Held-out denoising loss at matching t (200 held-out images, same noise; {len(curves)} seed(s))",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(where / "loss_by_t.png", dpi=120)
    plt.close(fig)

    pre = load_checkpoint(models / "pre")
    images, _ = select_split(pre, None, "val", limit=10)
    z0, _ = _latents(pre, images, "cpu")
    shape = tuple(z0.shape[1:])
    rows = [z0] + [sample_latents(pre.model, z0, shape, 10, pre.alphas_cumprod, seed=s) for s in (1, 2)]
    save_grid(pre.codec.decode(torch.cat(rows)), where / "samples_with_spatial_r.png")
    if not (tuned / "model.safetensors").is_file():
        return  # no tuned model (yet): no label samples
    label_model = load_checkpoint(tuned)
    rows = [sample_latents(label_model.model, torch.arange(10), shape, 10, label_model.alphas_cumprod, seed=s)
            for s in (1, 2, 3)]  # fmt: skip
    save_grid(label_model.codec.decode(torch.cat(rows)), where / "samples_tuned_labels.png")


def budget_figure(tried: list[dict], fraction: float, path: Path) -> None:
    """Validation accuracy (what picks the budget) and test top-1 against the tuning epochs, one line per arm:
    the mean over seeds, the band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in tried if r["labels"] == fraction]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, key, title in ((axes[0], "val", "validation (t-sweep's best, 200 held-out images)"),
                           (axes[1], "top1", "test top-1 (1,000 images, one noise draw)")):  # fmt: skip
        for arm in dict.fromkeys(r["arm"] for r in rows):
            epochs = sorted({r["epochs"] for r in rows if r["arm"] == arm})
            values = [[r[key] for r in rows if r["arm"] == arm and r["epochs"] == e] for e in epochs]
            ax.plot(epochs, [statistics.mean(v) for v in values], marker="o", label=arm)
            ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values], alpha=0.15)
        ax.set_xscale("log", base=2)
        budgets = sorted({r["epochs"] for r in rows})
        ax.set_xticks(budgets, [str(e) for e in budgets])
        ax.minorticks_off()
        ax.set_xlabel("tuning epochs")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("DC Zero accuracy")
    axes[0].legend(fontsize=7)
    seeds = len({r["seed"] for r in rows})
    fig.suptitle(f"Tuning budget at {percent(fraction)} of the labels (mean over {seeds} seeds, band: min to max)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_grid(images: torch.Tensor, path: Path, columns: int = 10, scale: int = 3) -> None:
    """A PNG of ``images`` float[N, C, S, S] in [-1, 1], ``columns`` per row, each pixel ``scale`` wide."""
    from PIL import Image

    from diffcls.repcond.sampling import image_grid

    grid = image_grid(images, columns).numpy()
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)


def choose_budget(candidates: list[dict]) -> dict:
    """The candidate (one arm and seed, one tuning budget each, shortest first) with the highest validation accuracy
    ``val``; a tie keeps the shorter budget."""
    return max(candidates, key=lambda r: r["val"])  # max keeps the first of equals


def scale_suffix(scale: float) -> str:
    return f"-x{scale:g}" if scale != 1 else ""


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/repcond-cmp")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--r-tokens", type=int, default=4)
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--figures", default=None, help="folder for loss_by_t.png and the sample grids")
    parser.add_argument(
        "--only-pretraining", action="store_true", help="stop after r's effect and the probes (no tuning)"
    )
    parser.add_argument("--fractions", default="0.1,0.01", help="label fractions to tune at (of 0.1, 0.01)")
    parser.add_argument("--arms", default=",".join([*ARMS, "twin"]), help="the tuning arms to run, and 'twin'")
    parser.add_argument(
        "--budget-scale",
        default="1",
        help="tuning epochs times this (folders -xS); several, e.g. 1,2: each arm's budget is chosen on validation",
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=10,
        help="tuning validates every N epochs (default 10; the weights are the same as with 1, and the budget is "
        "chosen by the t-sweep on the held-out images after training)",
    )
    args = parser.parse_args()
    if args.val_every < 1:
        parser.error(f"--val-every must be >= 1, not {args.val_every}")
    out = Path(args.output)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions, arms = [float(f) for f in args.fractions.split(",")], args.arms.split(",")
    if unknown := [f for f in fractions if f not in FRACTIONS] + [a for a in arms if a not in [*ARMS, "twin"]]:
        parser.error(f"unknown fractions or arms {unknown}: fractions {list(FRACTIONS)}, arms {[*ARMS, 'twin']}")
    try:
        scales = sorted({float(s) for s in args.budget_scale.split(",")})
    except ValueError:
        parser.error(f"--budget-scale takes numbers separated by commas, not {args.budget_scale!r}")
    if min(scales) <= 0:
        parser.error(f"--budget-scale must be positive, not {args.budget_scale!r}")
    suffix = scale_suffix(scales[0]) if len(scales) == 1 else "-chosen"
    table: dict[tuple[str, float], list[dict]] = {}
    curves, budget, stats, tried = [], {}, [], []
    for seed in seeds:
        models, results = out / f"seed{seed}", out / "results" / f"seed{seed}"
        results.mkdir(parents=True, exist_ok=True)
        spatial = ["--r-tokens", str(args.r_tokens), "--decode-injection", "input"]
        train(models / "pre", ["--method", "repcond-pretrain", "--model", "dit_small", *spatial],
              args.pretrain_epochs, seed)  # fmt: skip
        train(models / "unc", ["--method", "uncond-pretrain", "--model", "dit_small"], args.pretrain_epochs, seed)
        train(models / "rnd", ["--method", "uncond-pretrain", "--model", "dit_small"], 0, seed)
        budget[f"seed {seed} pretrain (val_loss, last quarter)"] = plateau_note(models / "pre", "val_loss", True)
        curves.append(loss_by_t(models))
        stats.append(r_statistics(models))
        for fraction in fractions:
            p = probes(models, fraction)
            table.setdefault(("linear probe on r (spatial)", fraction), []).append(p["r"])
            table.setdefault(("linear probe on raw pixels", fraction), []).append(p["pixels"])
        for fraction in [] if args.only_pretraining else fractions:
            base_epochs, flags = FRACTIONS[fraction]
            for key in [a for a in arms if a in ARMS]:
                label, source, init = ARMS[key]
                tune = ["--method", "repcond-tune", "--pretrained", str(models / source), "--data-ratio", str(fraction),
                        "--label-init", init, "--val-every", str(args.val_every), *flags]  # fmt: skip
                candidates = []
                for scale in scales:
                    epochs = round(base_epochs * scale)
                    folder = models / f"tune-{key}-{fraction}{scale_suffix(scale)}"
                    train(folder, tune, epochs, seed)
                    budget[f"seed {seed} {key} {fraction}, {epochs} epochs (val_top1, last quarter)"] = plateau_note(
                        folder, "val_top1", False
                    )
                    candidates.append(dc_zero(folder, results, args.draws) | {"epochs": epochs})
                chosen = choose_budget(candidates)
                table.setdefault((label, fraction), []).append(chosen)
                tried += [
                    {"arm": label, "labels": fraction, "seed": seed, **c, "chosen": c is chosen} for c in candidates
                ]
            if "twin" in arms:
                table.setdefault((TWIN, fraction), []).append(
                    twin(models / f"twin-{fraction}", fraction, seed, results)
                )
    if args.figures and scales == [1.0] and "pre-class-mean" in arms and 0.1 in fractions:
        figures(
            out / f"seed{seeds[0]}", out / f"seed{seeds[0]}" / "tune-pre-class-mean-0.1", curves, Path(args.figures)
        )

    print(f"\n## r's effect (spatial r, {args.r_tokens} values per token; held-out images; mean over seeds)\n")
    print("| t | " + " | ".join(map(str, LOSS_TIMESTEPS)) + " |\n|" + "---|" * (len(LOSS_TIMESTEPS) + 1))
    for key, label in (("with_r", "rep-cond, with r"), ("null_r", "rep-cond, r dropped"), ("uncond", "unconditional")):
        cells = [f"{statistics.mean(c[key][j] for c in curves):.4f}" for j in range(len(LOSS_TIMESTEPS))]
        print(f"| {label} | " + " | ".join(cells) + " |")
    ratio = [statistics.mean(c["with_r"]) / statistics.mean(c["uncond"]) for c in curves]
    print(f"\nLoss ratio rep-cond with r / unconditional (mean over t): {mean_std(ratio)}")
    print("\nr on the held-out images: " + ", ".join(f"{k} {mean_std([s[k] for s in stats])}" for k in stats[0]))
    if len(scales) > 1:
        print("\n## Tuning budgets tried (DC Zero; the validation accuracy picks each arm's budget per seed)\n")
        print("| arm | labels | seed | epochs | val (best t) | top-1 | top-1 (draws) | chosen |\n|" + "---|" * 8)
        for r in tried:
            print(f"| {r['arm']} | {percent(r['labels'])} | {r['seed']} | {r['epochs']} | {r['val']:.3f} | "
                  f"{r['top1']:.3f} | {r['top1_draws']:.3f} | {'yes' if r['chosen'] else ''} |")  # fmt: skip
        for fraction in fractions if args.figures else []:
            budget_figure(tried, fraction, Path(args.figures) / f"budgets_{percent(fraction).rstrip('%')}pct.png")
    budgets = "each arm at the budget its validation accuracy picks" if len(scales) > 1 else f"budget ×{scales[0]:g}"
    print(f"\n## DC Zero and baselines (test split; mean ± std over seeds {args.seeds}; DC Zero at the t chosen on"
          f" the held-out images, 1 and {args.draws} noise draws; {budgets})\n")  # fmt: skip
    per_fraction = ["val (best t)", "top-1", f"top-1 ({args.draws} draws)", "macro F1"]
    head = ["system"] + [f"{percent(f)}: {c}" if c == per_fraction[0] else c for f in fractions for c in per_fraction]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for label in dict.fromkeys(k[0] for k in table):
        cells = []
        for fraction in fractions:
            rows = table.get((label, fraction), [])
            val, draws = [r["val"] for r in rows if "val" in r], [r["top1_draws"] for r in rows if "top1_draws" in r]
            cells += [
                mean_std(val),
                mean_std([r["top1"] for r in rows]),
                mean_std(draws),
                mean_std([r["f1"] for r in rows]),
            ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    new, bases = ARMS["pre-class-mean"][0], [ARMS["unc-random"][0], ARMS["rnd-random"][0]]
    if all((label, f) in table for label in (new, *bases) for f in fractions):
        print(f"\n## Paired gains of {new} (top-1, one noise draw; seeds {args.seeds})\n")
        print("| over | labels | mean ± std over seeds | beyond the spread | 95% paired bootstrap |")
        print("|---|---|---|---|---|")
        print("\n".join(paired_gains(table, fractions, new, bases)))
    print("\n## Budget checks (change over the last quarter of the epochs)\n")
    for key, value in budget.items():
        print(f"- {key}: {value}")
    write_json(  # atomic: an interrupted run leaves the previous file whole
        out / f"comparison{suffix}.json",
        {"table": {f"{k[0]} @ {k[1]}": v for k, v in table.items()}, "budgets_tried": tried, "loss_by_t": curves},
    )


if __name__ == "__main__":
    main()

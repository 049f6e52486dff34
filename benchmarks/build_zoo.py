"""Build the model zoo (``src/diffcls/zoo/models``) from trained folders, measuring what each entry records.

For every entry of :data:`ENTRIES` this script

1. trains it with its recipe into ``--trained DIR/NAME`` unless a finished training is already there
   (``diffcls train RECIPE --output DIR/NAME``, exactly what ``diffcls zoo reproduce`` reruns);
2. for the Diffusion Classifier, fits its temperature λ on the validation split (stored in the trained folder's
   ``calibration.json``, shipped with the weights);
3. copies the checkpoint into the zoo without its training state (``training_state.pt``), keeping ``metrics.csv``
   (the training curve);
4. measures it with its readout through ``diffcls eval --checkpoint zoo:NAME``: the validation split, the whole
   test split and the fixed stratified test subset that the fast tests re-measure;
5. writes ``zoo.json`` (recipe, readout, metrics, version, commit, split, parameters, NFE, training time).

    python benchmarks/build_zoo.py --trained /work/zoo-build                 # every entry
    python benchmarks/build_zoo.py --trained /work/zoo-build mnist5k-didicm  # one

Run it from a clean checkout: the record names the commit the trainings ran at (``--commit``, default HEAD).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diffcls.cli import main as diffcls
from diffcls.runtime.checkpoint import CONFIG_NAME, METRICS_NAME, STATE_NAME
from diffcls.runtime.io import atomic_write_text
from diffcls.zoo import PACKAGE_ZOO_DIR, RECORD_NAME, ZOO_DIR_VARIABLE, zoo_entry
from diffcls.zoo.compare import parameter_count, weights_file
from diffcls.zoo.match import NOT_INSTALLED

METRIC_KEYS = ("top1", "top5", "nll", "brier", "ece", "ece_adaptive", "aurc", "tie_rate")  # no times: machine-bound


@dataclass(frozen=True)
class EntrySpec:
    summary: str
    recipe: tuple[str, ...]
    readout: tuple[str, ...] = ()  # diffcls eval arguments of the readout the metrics are measured with
    readout_label: str = "softmax"
    subset_images: int = 200  # the fixed stratified test subset the fast tests re-measure
    fit_temperature: bool = False  # the Diffusion Classifier's λ, fitted on the validation split


CP8 = ("--sampler", "cp", "--steps", "8")
# The budgets are the full benchmark preset's, set on mnist5k's validation curves (docs/protocols.md): the twin
# and the plain ResNet are flat from about epoch 8 of 15, DiDiCM climbs until about epoch 30 of 40.
ENTRIES = {
    "mnist5k-standard": EntrySpec(
        "DiDiRN's standard twin (the same network without label/noise conditioning), cross-entropy",
        ("--data", "mnist5k", "--method", "standard", "--model", "didirn_small", "--epochs", "15", "--seed", "0"),
    ),
    "mnist5k-plain": EntrySpec(
        "a plain ResNet of the same widths (BatchNorm only), cross-entropy",
        ("--data", "mnist5k", "--method", "standard", "--model", "resnet_small", "--epochs", "15", "--seed", "0"),
    ),
    "mnist5k-didicm": EntrySpec(
        "DiDiCM on DiDiRN (score entropy), read out by the library's CP-8",
        ("--data", "mnist5k", "--method", "didicm", "--model", "didirn_small", "--epochs", "40")
        + ("--val-sampler", "onepass", "--seed", "0"),
        CP8,
        "CP-8",
    ),
    "mnist5k-didicm-late1": EntrySpec(
        "DiDiCM on DiDiRN whose last stage alone sees the label and σ (the cheap DiDiCM), CP-8",
        ("--data", "mnist5k", "--method", "didicm", "--model", "didirn_small_late1", "--epochs", "40")
        + ("--val-sampler", "onepass", "--seed", "0"),
        CP8,
        "CP-8",
    ),
    # Fashion-MNIST (Debian's dataset-fashion-mnist): the full benchmark's seed-0 models with `--train-limit 5000
    # --budget standard=30 --budget didicm=80` (its validation curves at 20 and 40 epochs were still climbing).
    "fashion-mnist-standard": EntrySpec(
        "DiDiRN's standard twin on a 5,000-image stratified subset of Fashion-MNIST's training set, cross-entropy",
        ("--data", "fashion-mnist", "--train-limit", "5000", "--method", "standard", "--model", "didirn_small")
        + ("--epochs", "30", "--seed", "0"),
    ),
    "fashion-mnist-didicm": EntrySpec(
        "DiDiCM on DiDiRN, 5,000-image Fashion-MNIST subset, CP-8",
        ("--data", "fashion-mnist", "--train-limit", "5000", "--method", "didicm", "--model", "didirn_small")
        + ("--epochs", "80", "--val-sampler", "onepass", "--seed", "0"),
        CP8,
        "CP-8",
    ),
    "mnist5k-ddpm": EntrySpec(
        "class-conditional UNet (DDPM, 16 px) for the Diffusion Classifier, λ fitted on the validation split",
        ("--data", "mnist5k", "--method", "ddpm", "--model", "unet_small", "--img-size", "16", "--epochs", "40")
        + ("-b", "32", "--lr", "1e-3", "--ema-decay", "0.995", "--val-images", "50", "--val-steps", "10")
        + ("--seed", "0"),
        ("--n-samples", "10,50", "--to-keep", "3,1"),
        "DC 10→50 t, keep 3→1",
        subset_images=50,
        fit_temperature=True,
    ),
}


def run(argv: list[str]) -> None:
    print("diffcls " + " ".join(argv), flush=True)
    if diffcls(argv) != 0:
        sys.exit(f"failed: diffcls {' '.join(argv)}")


def evaluate(argv: list[str]) -> dict:
    """Run ``diffcls eval`` and read back its results file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.json"
        run([*argv, "--results-file", str(path)])
        return json.loads(path.read_text())


def recorded_metrics(results: dict) -> dict:
    return {"images": results["num_samples"], **{k: results[k] for k in METRIC_KEYS if results.get(k) is not None}}


def training_seconds(folder: Path) -> float:
    with open(folder / METRICS_NAME, newline="") as f:
        return round(sum(float(row["seconds"]) for row in csv.DictReader(f)), 1)


def train_if_needed(spec: EntrySpec, trained: Path) -> None:
    config = trained / CONFIG_NAME
    epochs = int(spec.recipe[spec.recipe.index("--epochs") + 1])
    if config.is_file() and (trained / METRICS_NAME).is_file():
        with open(trained / METRICS_NAME, newline="") as f:
            if len(list(csv.DictReader(f))) >= epochs:
                return
    run(["train", *spec.recipe, "--output", str(trained), *(["--resume"] if (trained / STATE_NAME).is_file() else [])])


def build(name: str, spec: EntrySpec, trained_root: Path, zoo: Path, commit: str) -> None:
    trained = trained_root / name
    train_if_needed(spec, trained)
    config = json.loads((trained / CONFIG_NAME).read_text())
    readout = list(spec.readout)
    val_command = ["eval", "--checkpoint", str(trained), "--data", config["data"], *readout, "--split", "val"]
    if spec.fit_temperature:
        evaluate([*val_command, "--fit-temperature"])
    target = zoo / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(trained, target, ignore=lambda _d, names: [n for n in names if n in NOT_INSTALLED])
    # A placeholder record so that zoo:NAME resolves while the entry is measured.
    record = {"name": name, "recipe": list(spec.recipe), "readout": readout, "data": config["data"]}
    record |= {"method": config["method"], "model": config["model"], "metrics": {}, "subset_images": 0}
    atomic_write_text(target / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    entry = zoo_entry(name, zoo)
    val = evaluate(entry.eval_command("--split", "val"))
    test = evaluate(entry.eval_command())
    subset = evaluate(entry.eval_command("--limit", str(spec.subset_images)))
    train_config = config.get("train", {})
    record |= {
        "summary": spec.summary,
        "readout_label": spec.readout_label,
        "nfe": test["nfe_per_image"],
        "params": parameter_count(target),
        "diffcls_version": config.get("diffcls_version"),
        "commit": commit,
        "split": {
            "seed": train_config.get("seed"),
            "val_split": train_config.get("val_split"),
            "train_limit": train_config.get("train_limit"),
            "val_images": val["num_samples"],
            "test_images": test["num_samples"],
            "note": "val: the stratified, seeded share of the training images the model held out (--val-split); "
            "test: the data spec's test split; test_subset: its first subset_images of a fixed class-interleaved "
            "order (eval --limit)",
        },
        "subset_images": spec.subset_images,
        "metrics": {
            "val": recorded_metrics(val),
            "test": recorded_metrics(test),
            "test_subset": recorded_metrics(subset),
        },
        "training_seconds": training_seconds(trained),
        "weights_file": str(weights_file(target).relative_to(target)),
        "temperature": test.get("temperature"),
    }
    atomic_write_text(target / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    print(f"zoo:{name}: test top-1 {test['top1']:.4f}, val top-1 {val['top1']:.4f}", flush=True)


def full_commit(revision: str = "HEAD") -> str:
    """The 40-digit hash of ``revision`` (an abbreviated hash, a branch, HEAD); the record needs the full one."""
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"--commit {revision}: not a commit of this repository")
    return run.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"entries to build (default: all: {', '.join(ENTRIES)})")
    parser.add_argument("--trained", required=True, help="folder of the trained models, one subfolder per entry")
    parser.add_argument("--zoo", default=str(PACKAGE_ZOO_DIR), help="zoo folder to write (default: the package's)")
    parser.add_argument("--commit", default=None, help="commit the trainings ran at (default: git HEAD)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {unknown}; known: {', '.join(ENTRIES)}")
    zoo = Path(args.zoo).resolve()
    zoo.mkdir(parents=True, exist_ok=True)
    os.environ[ZOO_DIR_VARIABLE] = str(zoo)  # zoo:NAME resolves in the zoo being built
    for name in args.names or ENTRIES:
        build(name, ENTRIES[name], Path(args.trained), zoo, full_commit(args.commit or "HEAD"))


if __name__ == "__main__":
    main()

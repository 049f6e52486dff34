"""Train and evaluate the networks behind the accuracy columns of benchmarks/late_conditioning.py.

For seeds 0 and 1: DiDiCM with the full DiDiRN, ``didirn_small_late2`` and ``didirn_small_late1`` (20 epochs), and
the standard twin (8 epochs), on mnist5k; then each one on the 1,000 test images, clean and at severity 5 of the 19
corruptions (CP-8 for DiDiCM, softmax for the twin), as ``diffcls eval --corruption C --severity 5`` does. Finished
trainings and results files are skipped, so an interrupted run continues where it stopped.

    .venv/bin/python benchmarks/late_conditioning_runs.py --output runs/late   # about 1 h on 2 CPU cores
    .venv/bin/python benchmarks/late_conditioning.py --accuracy-from runs/late --write-docs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from diffcls.data.corruptions import CORRUPTION_NAMES
from diffcls.didicm import SamplerConfig
from diffcls.eval.evaluate import EvalConfig, evaluate_classifier, write_results

RUNS = (
    ("didicm", "didirn_small", 20),
    ("didicm", "didirn_small_late2", 20),
    ("didicm", "didirn_small_late1", 20),
    ("standard", "didirn_small", 8),
)


def run_name(method: str, model: str, seed: int) -> str:
    return f"{'twin' if method == 'standard' else model}-s{seed}"


def train(out: Path, method: str, model: str, epochs: int, seed: int) -> None:
    """``diffcls train`` into ``out`` unless a finished run is there."""
    if (out / "model.safetensors").exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcls",
            "train",
            "--data",
            "mnist5k",
            "--method",
            method,
            "--model",
            model,
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--output",
            str(out),
        ],
        check=True,
    )


def evaluate(run: Path) -> None:
    """Top-1 and the other metrics, clean and at severity 5 of every corruption, one JSON per condition."""
    for name in ("clean", *CORRUPTION_NAMES):
        out = run / ("clean.json" if name == "clean" else f"{name}-5.json")
        if out.exists():
            continue
        corrupted = name != "clean"
        cfg = EvalConfig(
            str(run),
            "mnist5k",
            sampler=SamplerConfig("cp", steps=8),
            workers=1,
            corruption=name if corrupted else None,
            severity=5 if corrupted else None,
        )
        results, probs = evaluate_classifier(cfg, progress=False)
        write_results(results, probs, str(out), None)
        print(f"{run.name} {name}: top-1 {results['top1']:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path("runs/late"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    runs = [
        (args.output / run_name(method, model, seed), method, model, epochs, seed)
        for seed in args.seeds
        for method, model, epochs in RUNS
    ]
    for out, method, model, epochs, seed in runs:
        train(out, method, model, epochs, seed)
    for out, *_ in runs:
        evaluate(out)


if __name__ == "__main__":
    main()

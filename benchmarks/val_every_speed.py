"""What ``--val-every N`` saves when tuning on a few labelled images, and proof that it changes no weight.

On mnist5k at 1% of the labels an epoch is three optimiser steps, so the end-of-epoch work (the DC Zero validation
of 200 held-out images, then the training state and weights written atomically) costs more than the epoch itself.
``--val-every N`` does that work every N-th epoch and after the last. This script tunes the scratch arm of
``benchmarks/repcond_comparison.py`` (a random ``dit_small`` at 16 px, random label codes) for ``--epochs`` epochs
with each ``--val-every`` value in fresh ``diffcls train`` processes, rounds interleaved, and reports the median
wall time (the process included: import, data, model; a fixed cost that a longer run spreads thinner) and that
time ÷ epochs; the weights of every run are compared with those of the first value.

    .venv/bin/python benchmarks/val_every_speed.py --fractions 0.01,0.1 --epochs 20 --val-every 1,10 --repeats 3 \
        --write-docs

Prints a markdown table with its command, machine and date; ``--write-docs`` also puts it into
docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _harness import markdown_table, report  # benchmarks/_harness.py
from diffcls.runtime.checkpoint import WEIGHTS_NAME, load_weights

COMMON = ["--data", "mnist5k", "--img-size", "16", "--val-holdout", "200"]
BATCH = {0.01: "16", 0.1: "64"}  # the comparison benchmark's batch per label fraction


def diffcls(*args: str) -> float:
    """Run ``diffcls ARGS`` quietly; its wall-clock seconds."""
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "diffcls.cli", *args], check=True, capture_output=True)
    return time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", default="0.01,0.1", help="label fractions (of 0.01, 0.1)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--val-every", default="1,10", help="the values to compare; the first is the reference")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    every = [int(n) for n in args.val_every.split(",")]
    if unknown := [f for f in fractions if f not in BATCH]:
        ap.error(f"unknown fractions {unknown}: choose from {list(BATCH)}")
    if min(every) < 1 or args.epochs < 1 or args.repeats < 1:
        ap.error("--val-every values, --epochs and --repeats must be >= 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        random_dit = Path(tmp) / "rnd"
        diffcls("train", "--method", "uncond-pretrain", "--model", "dit_small", *COMMON, "--epochs", "0",
                "--output", str(random_dit))  # fmt: skip
        for fraction in fractions:
            times: dict[int, list[float]] = {n: [] for n in every}
            same: dict[int, bool] = {}
            for round_ in range(args.repeats):
                for n in every:  # interleaved: a change of machine load hits every value alike
                    out = Path(tmp) / f"tune-{fraction}-{n}-{round_}"
                    times[n].append(
                        diffcls("train", "--method", "repcond-tune", "--pretrained", str(random_dit),
                                "--data-ratio", str(fraction), "-b", BATCH[fraction], "--label-init", "random",
                                *COMMON, "--epochs", str(args.epochs), "--val-every", str(n), "--output", str(out))
                    )  # fmt: skip
                    weights = load_weights(out / WEIGHTS_NAME)
                    if round_ == 0 and n == every[0]:
                        reference = weights  # loaded once: every run is compared with the first
                    same[n] = same.get(n, True) and all(torch.equal(reference[k], weights[k]) for k in reference)
            base = statistics.median(times[every[0]])
            for n in every:
                median = statistics.median(times[n])
                rows.append([f"{fraction:g}", BATCH[fraction], str(args.epochs), str(n), f"{median:.1f}",
                             f"{median / args.epochs:.3f}", f"{base / median:.2f}×",
                             "yes" if same[n] else "**no**"])  # fmt: skip
    columns = ["labels", "batch", "epochs", "--val-every", "seconds (whole run)", "whole run ÷ epochs",
               "speed-up", "weights equal to the first"]  # fmt: skip
    notes = [
        "`diffcls train --method repcond-tune` of a random `dit_small` (the comparison's scratch arm), mnist5k at "
        "16 px, 200 images held out; whole process timed (import, data, model, training, the last validation and "
        "checkpoint). The weights are compared bit for bit: every epoch seeds its own randomness, so validating "
        "less often cannot change them."
    ]
    report("val-every", "Tuning on few labels: validating every N epochs", args.repeats,
           markdown_table(columns, rows), notes, args.write_docs)  # fmt: skip


if __name__ == "__main__":
    main()

"""Copy a benchmark folder without its weights: what its report and a resume need, a few MB.

    python benchmarks/copy_bench.py runs/bench-full docs/benchmarks/mnist5k/run

A benchmark writes each model's rows as soon as the model is trained, and a resume trains only the models whose
rows are not all written, so a long benchmark can move between machines (or sessions) as this copy: bench.json,
rows.jsonl, the trajectories, each model's config.json and metrics.csv, the Diffusion Classifier's per-image logs.
Weights, training states, corrupted test sets (rebuilt on demand) and lock files stay behind. Resume with the
benchmark's own command and ``--output`` set to the copy.
"""

from __future__ import annotations

import argparse
import sys

from diffcls.bench.runner import copy_without_weights
from diffcls.errors import DiffclsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a benchmark folder (diffcls bench --output)")
    parser.add_argument("dest", help="a new or empty folder")
    args = parser.parse_args(argv)
    try:
        files = copy_without_weights(args.source, args.dest)
    except DiffclsError as e:
        print(f"copy_bench: error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {size / 1e6:.2f} MB in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

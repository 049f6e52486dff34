"""Where does DiDiCM lose under a distribution shift: its network, or its CP steps?

    python benchmarks/shift_diagnosis.py --bench docs/benchmarks/fashion-mnist --models /work/bench-runs/fashion-full \
        --seed 0 --conditions clean,brightness/5,fog/3,contrast/3,snow/5

For one training seed of a benchmark, it evaluates the standard twin and DiDiCM (one-pass; CP with 1-16 Euler
steps, the library's ``euler-lower``; CP-8 analytic) on the same test images the benchmark used (its
``eval_limit``, corruptions from its cache), with ``diffcls eval --save-probs`` (every command printed; a finished
one is reused), and prints per condition and readout:

* top-1, and the **share of the most-predicted class**: 0.1 for a balanced 10-class prediction, 1.0 when every
  image gets one class (a collapse of the readout onto one class under the shift);
* mean confidence (max probability);
* against the one-pass readout of the same network: on how many images the argmax differs, and of those how many
  the readout gets right and one-pass gets right. The one-pass readout (one network call near σ = 0) and the CP
  readout use the same weights, so where they disagree the difference is the sampler's, not the network's.

The twin against one-pass separates the *network* (trained by cross-entropy vs by score entropy); one-pass against
CP-k separates the *readout*; CP-1..16 and analytic say whether more or exact steps change it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _harness import bench_eval  # benchmarks/_harness.py

READOUTS: dict[str, list[str]] = {
    "one-pass": ["--sampler", "onepass"],
    **{f"CP-{k}": ["--sampler", "cp", "--steps", str(k), "--cp-update", "euler-lower"] for k in (1, 2, 4, 8, 16)},
    "CP-8 analytic": ["--sampler", "cp", "--steps", "8", "--cp-update", "analytic"],
}


def run_eval(model: Path, data: str, limit: int, condition: str, extra: list[str], out: Path, cache: Path) -> Path:
    """``diffcls eval`` of ``model`` on ``condition``, probabilities saved to ``out``; reused when present."""
    bench_eval(model, data, limit, condition, extra, cache, out.with_suffix(".json"), save_probs=out)
    return out


def test_labels(data: str, limit: int) -> np.ndarray:
    from diffcls.data import load_source
    from diffcls.eval.evaluate import select_split

    return np.asarray(select_split(load_source(data), "test", limit).labels)


def summarise(probs: np.ndarray, labels: np.ndarray, one_pass: np.ndarray | None) -> dict:
    """top-1, the most-predicted class's share, mean confidence and the disagreement with one-pass."""
    prediction = probs.argmax(1)
    counts = np.bincount(prediction, minlength=probs.shape[1])
    out = {
        "top1": float((prediction == labels).mean()),
        "top_share": float(counts.max() / len(labels)),
        "confidence": float(probs.max(1).mean()),
    }
    if one_pass is not None:
        other = one_pass.argmax(1)
        differ = prediction != other
        out.update(
            differ=int(differ.sum()),
            right=int((prediction[differ] == labels[differ]).sum()),
            one_pass_right=int((other[differ] == labels[differ]).sum()),
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, required=True, help="the benchmark folder (its bench.json)")
    parser.add_argument("--models", type=Path, help="the folder holding models/ with weights (default: --bench)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the models to diagnose")
    parser.add_argument("--conditions", default="clean,brightness/5,fog/3,contrast/3,snow/5")
    parser.add_argument("--output", type=Path, default=Path("runs/shift-diagnosis"), help="saved probabilities")
    args = parser.parse_args(argv)

    bench = json.loads((args.bench / "bench.json").read_text())
    data, limit = bench["data"], bench["preset"]["eval_limit"]
    models = (args.models or args.bench) / "models"
    twin, didicm = models / f"standard-r1-s{args.seed}", models / f"didicm-r1-s{args.seed}"
    for folder in (twin, didicm):
        if not (folder / "model.safetensors").is_file():
            sys.exit(f"error: {folder} holds no weights (give --models, the run that trained them)")
    labels = test_labels(data, limit)
    cache = (args.models or args.bench) / "cache"

    print(f"\n{data}, seed {args.seed}, {limit} test images\n")
    print("| condition | readout | top-1 | most-predicted class's share | mean confidence | argmax ≠ one-pass "
          "| of those right: readout / one-pass |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for condition in args.conditions.split(","):
        tag = condition.replace("/", "-")
        run = {
            "twin (softmax)": run_eval(twin, data, limit, condition, [], args.output / tag / "twin.npy", cache),
            **{
                f"DiDiCM {name}": run_eval(
                    didicm, data, limit, condition, extra, args.output / tag / f"{name.replace(' ', '-')}.npy", cache
                )
                for name, extra in READOUTS.items()
            },
        }
        one_pass = np.load(run["DiDiCM one-pass"])
        for name, path in run.items():
            s = summarise(np.load(path), labels, None if name == "DiDiCM one-pass" else one_pass)
            tail = f"{s['differ']} | {s['right']} / {s['one_pass_right']}" if "differ" in s else "– | –"
            print(f"| {condition} | {name} | {s['top1']:.3f} | {s['top_share']:.3f} | {s['confidence']:.3f} | {tail} |")


if __name__ == "__main__":
    main()

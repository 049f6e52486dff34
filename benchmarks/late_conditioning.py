"""Late conditioning: the DiDiRN image prefix computed once per image instead of once per diffusion step.

A DiDiCM sampler calls the network once per step with the same image and a new (c_t, sigma). The stem and any
stage that does not see (c_t, sigma) give the same output at every step, so
``diffcls.inference.predict.bind_image`` computes that *image prefix* once and runs only the conditioned stages
per step. This script times, in one process and interleaved repeat by repeat, the samplers as ``diffcls eval``
runs them (the method's ``readout``):

* **before**: the paper's DiDiRN, the whole network at every step;
* **full DiDiRN, stem once**: the paper's network with only its stem shared across steps (not faster, so the
  library does not do it);
* **late2 / late1**: ``didirn_small_late2`` / ``_late1``, only the last 2 / 1 of the 4 stages conditioned.

The standard twin (1 network evaluation) is the reference for the ratios. FLOPs per image are counted with
``torch.utils.flop_counter.FlopCounterMode`` over the whole sampler call. With ``--accuracy-from DIR`` the table
also gets each network's test top-1 from the ``diffcls eval`` results in ``DIR/<model>-s<seed>/`` (clean.json
and ``<corruption>-5.json``; benchmarks/late_conditioning_runs.py trains and evaluates them), as the mean over
seeds.

    .venv/bin/python benchmarks/late_conditioning.py --repeats 5 --accuracy-from runs/late --write-docs
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from _harness import interleaved_medians, markdown_table, random_images, report  # benchmarks/_harness.py
from diffcls.data.corruptions import CORRUPTION_NAMES
from diffcls.didicm import SamplerConfig
from diffcls.methods import get_method

NETWORKS = (
    ("full DiDiRN, whole network every step (before)", "didirn_small", False),
    ("full DiDiRN, stem once (not used)", "didirn_small", True),
    ("late2: last 2 stages conditioned", "didirn_small_late2", True),
    ("late1: last stage conditioned", "didirn_small_late1", True),
)
CORRUPTIONS = ("gaussian_noise", "motion_blur", "fog")


class StemOnce(nn.Module):
    """The paper's DiDiRN with its stem shared across steps: the library does not do this (it is not faster), so
    this wrapper claims a prefix stage to make ``bind_image`` take the shared-prefix path anyway."""

    prefix_stages = 1

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.num_classes = model, model.num_classes
        self.forward_prefix, self.forward_conditioned = model.forward_prefix, model.forward_conditioned


def sampler_call(model: nn.Module, images: torch.Tensor, sampler: SamplerConfig | None) -> Callable[[], object]:
    """One readout call: the twin's softmax when ``sampler`` is None, else a seeded DiDiCM sampler (call it under
    ``torch.inference_mode``)."""
    if sampler is None:
        return partial(get_method("standard").readout(model), images)
    readout = get_method("didicm").readout(model, sampler)
    return lambda: readout(images, torch.Generator().manual_seed(0))


def flops_per_image(run: Callable[[], object], batch: int) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / batch


def top1_from(folder: Path | None, run: str, conditions: tuple[str, ...]) -> str:
    """Mean test top-1 over the seeds' ``diffcls eval`` results (``folder/<run>-s<seed>/<condition>.json``) and
    the conditions; '' unless every seed has every condition."""
    if folder is None:
        return ""
    seeds = sorted(p for p in folder.glob(f"{run}-s*") if p.is_dir())
    files = [seed / f"{condition}.json" for seed in seeds for condition in conditions]
    if not seeds or not all(f.exists() for f in files):
        return ""
    return f"{statistics.mean(json.loads(f.read_text())['top1'] for f in files):.3f}"


def accuracy_cells(folder: Path | None, run: str) -> list[str]:
    """Top-1 clean, at severity 5 of each shown corruption, and over all 19 at severity 5."""
    shown = [top1_from(folder, run, (condition,)) for condition in ("clean", *(f"{c}-5" for c in CORRUPTIONS))]
    return [*shown, top1_from(folder, run, tuple(f"{c}-5" for c in CORRUPTION_NAMES))]


def build_cases(args) -> list[tuple[str, str, str, Callable[[], object]]]:
    """(sampler label, network label, model name, call) per case; the twin first."""
    images = random_images(args.batch)
    torch.manual_seed(0)
    twin = get_method("standard").create_network("didirn_small", args.classes).eval()
    cases = [("softmax", "standard twin", "twin", sampler_call(twin, images, None))]
    samplers = (
        ("CP-8", SamplerConfig("cp", steps=8)),
        (f"CL {args.chains} chains × 4 steps", SamplerConfig("cl", steps=4, chains=args.chains)),
    )
    for sampler_label, sampler in samplers:
        for label, name, prefix_once in NETWORKS:
            torch.manual_seed(0)
            model = get_method("didicm").create_network(name, args.classes).eval()
            model = StemOnce(model).eval() if prefix_once and model.prefix_stages == 0 else model
            cases.append((sampler_label, label, name, sampler_call(model, images, sampler)))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--chains", type=int, default=10)
    ap.add_argument(
        "--accuracy-from",
        type=Path,
        default=None,
        help="folder of trained runs with their results (benchmarks/late_conditioning_runs.py)",
    )
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    with torch.inference_mode():
        cases = build_cases(args)
        flops = [flops_per_image(run, args.batch) for *_, run in cases]
        medians = interleaved_medians({str(i): case[3] for i, case in enumerate(cases)}, args.repeats)
    twin_time, rows = medians["0"], []
    before: dict[str, float] = {}
    for i, (sampler_label, label, name, _) in enumerate(cases):
        t = medians[str(i)]
        before.setdefault(sampler_label, t)  # the first row of each sampler is its 'before'
        shown = sampler_label in ("softmax", "CP-8")
        accuracy = accuracy_cells(args.accuracy_from, name) if shown else [""] * (len(CORRUPTIONS) + 2)
        rows.append(
            [
                sampler_label,
                label,
                f"{flops[i] / 1e6:,.0f}",
                f"{t:.3f}",
                f"{args.batch / t:,.0f}",
                f"{t / twin_time:.2f}×",
                f"{before[sampler_label] / t:.2f}×" if i else "",
                *accuracy,
            ]
        )
    columns = [
        "sampler",
        "network",
        "MFLOP per image",
        "seconds per call",
        "images/s",
        "time ÷ twin's",
        "speed-up over before",
        "top-1 clean",
        *(f"{c.replace('_', ' ')} 5" for c in CORRUPTIONS),
        f"all {len(CORRUPTION_NAMES)} corruptions at 5 (mean)",
    ]
    notes = [
        f"Batch {args.batch}, 32 px, K = {args.classes}, didirn_small geometry; untrained networks with fixed "
        "seeds on random inputs for the times and FLOPs (time does not depend on the weights). "
        "Top-1 (mnist5k test, 1,000 images, mean of seeds 0 and 1) of the networks that "
        "benchmarks/late_conditioning_runs.py trains and evaluates: DiDiCM (`diffcls train --method didicm "
        "--model NAME --epochs 20 --seed S`) read out by CP-8, the standard twin (`--method standard --model "
        "didirn_small --epochs 8`) by softmax; clean and at severity 5 of each corruption. The stem-once row "
        "is the full DiDiRN's network, hence its accuracy."
    ]
    report(
        "late-conditioning",
        "Late conditioning: the image prefix once per image",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()

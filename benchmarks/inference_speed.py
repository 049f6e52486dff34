"""Inference speed of every way diffcls classifies: images/s and network evaluations (NFE) per image.

Rows: DiDiRN's standard twin; DiDiCM on the same DiDiRN with CP-k, Euler and analytic (k = 1, 2, 4, 8), CL
(10 chains × 4 steps) and the one-pass readout; the Diffusion Classifier on a class-conditional ``unet_small``
at 16 and 32 px with a flat schedule and adaptive ones (the paper's CIFAR-10 schedule, 2,750 NFE at K = 10, and a
small one). The networks are untrained, with fixed seeds (time does not depend on the weights), and the inputs
random 3-channel images, under ``torch.inference_mode``.

Each row's NFE comes from the library (``ClassifierMethod.nfe``, ``SamplerConfig.nfe``, ``Schedule.nfe``) and is
checked against the rows a wrapper counts going through the network. All rows of one batch size run in one
process, interleaved repeat by repeat, so the ratios to the twin's time per image compare like with like. The
Diffusion Classifier classifies at most ``--dc-max-images`` images per call (its cost per image hardly depends on
the number of images: its forward passes hold ``--dc-rows`` network rows whatever the image batch).

    .venv/bin/python benchmarks/inference_speed.py --repeats 5 --write-docs

Prints a markdown table with its command, machine and date; ``--write-docs`` also puts it into
docs/performance.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn

from _harness import interleaved_medians, markdown_table, random_images, report  # benchmarks/_harness.py
from diffcls.didicm import SamplerConfig
from diffcls.generative import Schedule, classify, parse_schedule
from diffcls.methods import get_method
from diffcls.models.noise_predictors import create_noise_predictor, create_scheduler

PAPER_NFE = {"cifar10": 2750}  # the Diffusion Classifier paper's count at K = 10


class CountRows(nn.Module):
    """A network that counts the rows (network evaluations) it is called with."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.num_classes, self.rows = net, net.num_classes, 0

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.net(x, *args)


@dataclass
class Case:
    """One row of the table: a way to classify ``images`` with ``net`` at ``nfe`` evaluations per image."""

    method: str
    network: str
    nfe: int
    net: CountRows
    images: torch.Tensor
    run: Callable[[], object]

    def check_nfe(self) -> None:
        """Run once (the warm-up) and assert that the rows counted per image equal the library's NFE."""
        self.net.rows = 0
        self.run()
        counted = self.net.rows / len(self.images)
        assert counted == self.nfe, f"{self.method}: {counted} network evaluations per image, library says {self.nfe}"


def classifier_cases(twin: CountRows, didicm: CountRows, images: torch.Tensor, args) -> list[Case]:
    """The standard twin and DiDiCM's samplers, through their method's readout as ``diffcls eval`` runs them."""
    samplers = [
        (f"DiDiCM CP-{k} ({update})", SamplerConfig("cp", k, cp_update=update))
        for update in ("euler", "analytic")
        for k in args.cp_steps
    ]
    samplers += [
        (
            f"DiDiCM CL {args.cl_chains} chains × {args.cl_steps} steps",
            SamplerConfig("cl", args.cl_steps, chains=args.cl_chains),
        ),
        ("DiDiCM one-pass", SamplerConfig("onepass")),
    ]
    network = f"{args.model}, 32 px"
    standard, diffusion = get_method("standard"), get_method("didicm")
    cases = [Case("standard twin", network, standard.nfe(), twin, images, partial(standard.readout(twin), images))]
    for label, cfg in samplers:
        run = partial(diffusion.readout(didicm, cfg), images, torch.Generator().manual_seed(0))
        cases.append(Case(label, network, diffusion.nfe(cfg), didicm, images, run))
    return cases


def dc_schedule(spec: str) -> tuple[str, Schedule]:
    """``cifar10``, ``flat-10`` or ``4,16:2,1`` (n_samples:to_keep) -> (label, schedule)."""
    schedule = parse_schedule(*spec.split(":")) if ":" in spec else parse_schedule(preset=spec)
    stages = f"{','.join(map(str, schedule.n_samples))} keep {','.join(map(str, schedule.to_keep))}"
    return (spec if ":" not in spec else "adaptive") + f" ({stages})", schedule


def dc_cases(unets: dict[int, CountRows], alphas_cumprod: torch.Tensor, batch: int, args) -> list[Case]:
    """The Diffusion Classifier with each schedule on each UNet, through ``classify`` as ``diffcls eval`` runs it."""
    cases = []
    for size, unet in unets.items():
        images = random_images(min(batch, args.dc_max_images), size, seed=1)
        for spec in args.dc_schedules:
            label, schedule = dc_schedule(spec)
            nfe = schedule.nfe(args.classes)
            assert spec not in PAPER_NFE or args.classes != 10 or nfe == PAPER_NFE[spec], (spec, nfe)
            noise = torch.randn(schedule.num_timesteps, *images.shape[1:], generator=torch.Generator().manual_seed(2))
            run = partial(
                classify, unet, images, args.classes, alphas_cumprod, schedule, noise, batch_size=args.dc_rows
            )
            cases.append(Case(f"Diffusion Classifier {label}", f"{args.dc_model}, {size} px", nfe, unet, images, run))
    return cases


def build_networks(args) -> tuple[CountRows, CountRows, dict[int, CountRows]]:
    """Untrained twin, DiDiCM network and one class-conditional UNet per size, each seeded, in eval mode."""

    def seeded(make):
        torch.manual_seed(0)
        return CountRows(make().eval())

    twin = seeded(lambda: get_method("standard").create_network(args.model, args.classes))
    didicm = seeded(lambda: get_method("didicm").create_network(args.model, args.classes))
    unets = {s: seeded(lambda s=s: create_noise_predictor(args.dc_model, args.classes, s)) for s in args.dc_sizes}
    return twin, didicm, unets


def rate(x: float) -> str:
    """Three significant digits, thousands separated: 0.257, 25.7, 2,570."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def measure(cases: list[Case], repeats: int) -> list[list[str]]:
    """Check every case's NFE (its warm-up), time them interleaved, and format the rows."""
    for case in cases:
        case.check_nfe()
    medians = interleaved_medians({str(i): case.run for i, case in enumerate(cases)}, repeats, warmup=0)
    twin_per_image = medians["0"] / len(cases[0].images)
    rows = []
    for i, case in enumerate(cases):
        per_image = medians[str(i)] / len(case.images)
        rows.append(
            [
                case.method,
                case.network,
                f"{case.nfe:,}",
                str(len(case.images)),
                f"{medians[str(i)]:.4f}",
                rate(1 / per_image),
                f"{per_image / twin_per_image:,.1f}×",
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256], help="images per call")
    ap.add_argument("--model", default="didirn_small")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--cp-steps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--cl-chains", type=int, default=10)
    ap.add_argument("--cl-steps", type=int, default=4)
    ap.add_argument("--dc-model", default="unet_small")
    ap.add_argument("--dc-sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument(
        "--dc-schedules",
        nargs="+",
        default=["flat-10", "cifar10", "4,16:2,1"],
        help="presets, flat-N, or n_samples:to_keep",
    )
    ap.add_argument("--dc-max-images", type=int, default=4, help="images per Diffusion Classifier call, at most")
    ap.add_argument("--dc-rows", type=int, default=256, help="network rows per forward pass (classify's batch_size)")
    ap.add_argument("--no-dc", action="store_true", help="skip the Diffusion Classifier rows")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    twin, didicm, unets = build_networks(args)
    alphas_cumprod = create_scheduler().alphas_cumprod
    rows = []
    with torch.inference_mode():
        for batch in args.batches:
            images = random_images(batch, 32)
            cases = classifier_cases(twin, didicm, images, args)
            cases += [] if args.no_dc else dc_cases(unets, alphas_cumprod, batch, args)
            rows += measure(cases, args.repeats)
    columns = [
        "method",
        "network, input",
        "NFE per image",
        "images per call",
        "seconds per call",
        "images/s",
        "time per image ÷ twin's",
    ]
    notes = [
        (
            "Untrained networks with fixed seeds and random 3-channel inputs (time does not depend on the "
            "weights). NFE per image is the library's (`SamplerConfig.nfe`, `Schedule.nfe`) and equals the rows a "
            "wrapper counted through the network (asserted); the twin of each batch size is the reference. The "
            f"Diffusion Classifier classifies at most {args.dc_max_images} images per call, {args.dc_rows} network "
            f"rows per forward pass, K = {args.classes}."
        )
    ]
    report(
        "inference-speed",
        "Inference speed and NFE per image",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()

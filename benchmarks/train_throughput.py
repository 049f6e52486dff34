"""Training throughput of DiDiCM against its standard twin, set against their FLOP ratio.

One training step is the objective's forward pass, backward and an AdamW step, as ``diffcls train`` runs it:
DiDiCM's score entropy (``get_method("didicm").objective(config, K)``) on a DiDiRN, and cross-entropy
(``get_method("standard").objective(config, K)``) on its standard twin (the same network without the label/noise
conditioning). Both run in one process, interleaved repeat by repeat, on random 3-channel images with random
labels. Forward FLOPs of one batch (the objective, network and loss) are counted with
``torch.utils.flop_counter.FlopCounterMode``; if DiDiCM's time ratio exceeds its FLOP ratio, the conditioning
costs more than its arithmetic (memory traffic, small ops).

    .venv/bin/python benchmarks/train_throughput.py --repeats 7 --write-docs

Prints a markdown table with its command, machine and date; ``--write-docs`` also puts it into
docs/performance.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from _harness import interleaved_medians, markdown_table, report  # benchmarks/_harness.py
from diffcls.methods import get_method
from diffcls.train.config import TrainConfig

CONTENDERS = (("standard twin", "standard", "cross-entropy"), ("DiDiCM", "didicm", "score entropy"))


def train_step(model: nn.Module, objective, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One optimisation step (objective, backward, AdamW) on a fixed batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run() -> None:
        loss = objective(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def forward_flops(model: nn.Module, objective, images: torch.Tensor, labels: torch.Tensor) -> int:
    """FLOPs of the objective's forward pass (network and loss) on one batch."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        objective(model, images, labels)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", default="didirn_small")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.img_size, args.img_size, generator=g) * 2 - 1
    labels = torch.randint(0, args.classes, (args.batch,), generator=g)
    steps, flops = {}, {}
    for label, method, _ in CONTENDERS:
        torch.manual_seed(0)
        classifier = get_method(method)
        model = classifier.create_network(args.model, args.classes).train()
        config = TrainConfig(data="", method=method, model=args.model, output="")  # diffcls train's defaults
        objective = classifier.objective(config, args.classes)
        flops[label] = forward_flops(model, objective, images, labels)
        steps[label] = train_step(model, objective, images, labels)
    medians = interleaved_medians(steps, args.repeats)
    twin = CONTENDERS[0][0]
    rows = [
        [
            label,
            f"{args.model}, {args.img_size} px",
            loss,
            f"{flops[label] / 1e9:.2f}",
            f"{medians[label]:.3f}",
            f"{args.batch / medians[label]:.0f}",
            f"{flops[label] / flops[twin]:.3f}×",
            f"{medians[label] / medians[twin]:.3f}×",
        ]
        for label, _, loss in CONTENDERS
    ]
    columns = [
        "model",
        "network, input",
        "objective",
        "forward GFLOP per batch",
        "seconds per step",
        "images/s",
        "FLOPs ÷ twin's",
        "step time ÷ twin's",
    ]
    notes = [
        (
            f"Batch {args.batch}, K = {args.classes}, AdamW; random inputs and labels, untrained networks with "
            "fixed seeds. FLOPs: the objective's forward pass (FlopCounterMode counts matrix products and "
            "convolutions); a step (forward, backward, optimiser) costs about three forward passes."
        )
    ]
    report(
        "train-throughput",
        "Training throughput: DiDiCM against its standard twin",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()

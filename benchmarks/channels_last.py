"""Channels-last against NCHW activations in DiDiRN: inference and training-step time, side by side.

DiDiRN converts its input to channels-last (``model.channels_last = True``, the default); this measures what that
buys on the machine at hand. Both layouts run in the same process, interleaved repeat by repeat, so machine load
hits them alike; the table gives the median per layout and their ratio.

    .venv/bin/python benchmarks/channels_last.py --repeats 7

Prints a markdown table (and the command, machine and date to paste above it in docs/performance.md).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import timm
import torch

import diffcls.models  # noqa: F401  (registers the DiDiRN family)
from diffcls.methods import get_method
from diffcls.train.config import TrainConfig


def time_call(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def inference(model, images: torch.Tensor, conditional: bool):
    """One forward pass in inference mode: ``images`` float[B, 3, 32, 32]."""
    labels, sigma = torch.zeros(len(images), dtype=torch.long), torch.rand(len(images))

    def run():
        with torch.inference_mode():
            model(images, labels, sigma) if conditional else model(images)

    return run


def train_step(model, images: torch.Tensor, method: str, model_name: str):
    """One optimisation step (loss, backward, AdamW) at batch ``len(images)``, with the method's objective at
    ``diffcls train``'s defaults."""
    config = TrainConfig(data="", method=method, model=model_name, output="")
    objective = get_method(method).objective(config, model.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, model.num_classes, (len(images),), generator=torch.Generator().manual_seed(0))

    def run():
        loss = objective(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="didirn_small")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--infer-batch", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for label, method, conditional in (("DiDiCM (conditional)", "didicm", True), ("standard twin", "standard", False)):
        model = timm.create_model(args.model, num_classes=10, conditional=conditional)
        cases = {
            f"inference, batch {args.infer_batch}": (
                model.eval(),
                inference(model, torch.randn(args.infer_batch, 3, 32, 32), conditional),
            ),
            f"training step, batch {args.train_batch}": (
                model,
                train_step(model, torch.randn(args.train_batch, 3, 32, 32), method, args.model),
            ),
        }
        for case, (net, fn) in cases.items():
            net.train(case.startswith("training"))
            times = {True: [], False: []}
            for layout in (True, False):  # warm-up of both
                net.channels_last = layout
                fn()
            for _ in range(args.repeats):
                for layout in (True, False):
                    net.channels_last = layout
                    times[layout].append(time_call(fn))
            nchw, last = statistics.median(times[False]), statistics.median(times[True])
            rows.append((label, case, nchw, last, nchw / last))
    print(
        f"`.venv/bin/python benchmarks/channels_last.py --repeats {args.repeats}` on "
        f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, {datetime.date.today()}; median of "
        f"{args.repeats}\n"
    )
    print("| model | case | NCHW (s) | channels-last (s) | speed-up |")
    print("|---|---|---|---|---|")
    for label, case, nchw, last, ratio in rows:
        print(f"| {label} | {case} | {nchw:.3f} | {last:.3f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()

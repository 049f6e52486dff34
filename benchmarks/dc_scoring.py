"""The Diffusion Classifier's batched scoring against a loop of one forward pass per (class, timestep).

``noise_prediction_errors`` (generative/scoring.py) puts all K candidate classes of one (t, ε) into one batched
forward pass, x_t built once and repeated across the classes, and packs several (t, ε) pairs into a pass of up
to ``--rows`` network rows. This times, on the same image, timesteps and noise:

* loop: one forward pass of one row per (class, timestep), the naive implementation;
* one pass per (t, ε): the library with ``batch_size = K``, the K classes of one (t, ε) in one pass;
* library default: ``batch_size = --rows`` (256, what ``diffcls eval`` uses).

The errors of the three agree (asserted, allclose); the table gives their medians and the speed-up over the
loop. A note adds the share of a forward pass's FLOPs spent in the UNet's timestep and class embeddings, the
only part that sharing across classes could still save (x_t is already built once per (image, t)). The UNets
(class-conditional ``unet_small``, K = 10) are untrained with fixed seeds; the images random.

    .venv/bin/python benchmarks/dc_scoring.py --repeats 7 --write-docs

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
from diffcls.generative import noise_prediction_errors, per_sample_error, timestep_grid
from diffcls.models.noise_predictors import create_noise_predictor, create_scheduler


def looped_errors(
    net: nn.Module,
    x0: torch.Tensor,
    classes: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """float32[B, A, J]: the errors of ``noise_prediction_errors``, one forward pass per (image, class, timestep)."""
    abar = alphas_cumprod.double()[timesteps]
    signal, sigma = abar.sqrt().to(x0.dtype), (1 - abar).sqrt().to(x0.dtype)
    errors = torch.empty(*classes.shape, len(timesteps))
    for b in range(len(x0)):
        for j, t in enumerate(timesteps):
            eps = noise[b, j : j + 1]
            x_t = signal[j] * x0[b : b + 1] + sigma[j] * eps
            for a, c in enumerate(classes[b]):
                eps_hat = net(x_t, t.view(1), c.view(1))[:, : x0.shape[1]]
                errors[b, a, j] = per_sample_error(eps, eps_hat)[0]
    return errors


class CountPasses(nn.Module):
    """A network that counts its forward passes."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.passes = net, 0

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        return self.net(*args)


def scorers(
    net: nn.Module,
    x0: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    num_classes: int,
    rows: int,
) -> dict[str, Callable[[], torch.Tensor]]:
    """The three ways, each a function returning float32[B, K, J] errors; the loop first."""
    classes = torch.arange(num_classes).expand(len(x0), -1)

    def library(batch_size: int):
        return lambda: noise_prediction_errors(
            net, x0, classes, timesteps, noise, alphas_cumprod, batch_size=batch_size
        )

    return {
        "loop: one pass per (class, t)": lambda: looped_errors(net, x0, classes, timesteps, noise, alphas_cumprod),
        "one pass per (t, ε), K rows": library(num_classes),
        f"library default, batch_size {rows}": library(rows),
    }


def measure(size: int, args, alphas_cumprod: torch.Tensor) -> list[list[str]]:
    """Rows of the table for one image size: run each way once (counting its forward passes) and check that
    they agree, then time them interleaved."""
    torch.manual_seed(0)
    net = CountPasses(create_noise_predictor(args.model, args.classes, size).eval())
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(args.images, 3, size, size, generator=g) * 2 - 1
    timesteps = timestep_grid(args.timesteps)
    noise = torch.randn(args.images, args.timesteps, 3, size, size, generator=g)
    ways = scorers(net, x0, timesteps, noise, alphas_cumprod, args.classes, args.rows)
    results, passes = {}, {}
    for name, fn in ways.items():  # also the warm-up
        net.passes = 0
        results[name], passes[name] = fn(), net.passes
    reference = results[next(iter(ways))]
    for name, errors in results.items():
        torch.testing.assert_close(errors, reference, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    medians = interleaved_medians(ways, args.repeats, warmup=0)
    loop = medians[next(iter(ways))]
    evaluations = args.images * args.classes * args.timesteps
    return [
        [
            f"{args.model}, {size} px",
            str(args.classes),
            str(args.timesteps),
            name,
            f"{passes[name] / args.images:g}",
            f"{evaluations / passes[name]:g}",
            f"{(results[name] - reference).abs().max().item():.1e}",
            f"{medians[name]:.4f}",
            f"{loop / medians[name]:.1f}×",
        ]
        for name in ways
    ]


def embedding_share(args, size: int) -> float:
    """Fraction of one forward pass's FLOPs in the UNet's timestep and class embeddings (K rows, one t)."""
    torch.manual_seed(0)
    net = create_noise_predictor(args.model, args.classes, size).eval()
    x_t = torch.randn(args.classes, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        net(x_t, torch.full((args.classes,), 500), torch.arange(args.classes))
    embedding = sum(
        sum(ops.values())
        for name, ops in counter.get_flop_counts().items()
        if name.endswith((".time_embedding", ".class_embedding"))
    )
    return embedding / counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", default="unet_small")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--timesteps", type=int, default=10, help="evenly spaced timesteps, one noise each")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--rows", type=int, default=256, help="network rows per pass of the library default")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    alphas_cumprod = create_scheduler().alphas_cumprod
    with torch.inference_mode():
        rows = [row for size in args.sizes for row in measure(size, args, alphas_cumprod)]
    columns = [
        "network, input",
        "K",
        "timesteps",
        "scoring",
        "forward passes per image",
        "rows per pass",
        "max abs. difference to the loop",
        "seconds",
        "speed-up over the loop",
    ]
    notes = [
        (
            f"{args.images} image(s), the same timesteps and noise for all three ways; untrained networks with "
            "fixed seeds, random inputs. Seconds score every class at every timestep (K × timesteps network "
            "evaluations per image)."
        ),
        "Share of a forward pass's FLOPs in the timestep and class embeddings (all that reusing them across "
        "classes could save): "
        + ", ".join(f"{embedding_share(args, size):.2%} at {size} px" for size in args.sizes)
        + ".",
    ]
    report(
        "dc-scoring",
        "Diffusion Classifier: batched scoring against a loop",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()

"""Time and peak memory of one DiDiCM-CP Euler step against K: the O(B·K) form against the explicit K×K rate matrix.

Each form runs in fresh subprocesses; the peak is the growth of the process's maximum resident set size
(ru_maxrss) over a baseline taken after the inputs were allocated, so it counts only the step's temporaries. A
subprocess times ``--inner`` steps (the first also gives the peak) and reports their median; the table gives the
median over ``--repeats`` subprocesses. The O(K) form runs at every K; the K×K form only where its estimated peak
(three float64 B×K×K tensors alive at once) fits in ``--max-gib``, and the table says why it skipped the others.
Time ÷ K of the O(K) form stays about constant once K is large enough to hide the fixed cost of a step: linear
growth.

    .venv/bin/python benchmarks/cp_step_memory.py --classes 10 100 1000 10000 --batch 256 --repeats 3 --write-docs

Prints a markdown table with its command, machine and date; ``--write-docs`` also puts it into
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

from _harness import markdown_table, report  # benchmarks/_harness.py

KXK_TENSORS = 3  # B×K×K float64 tensors alive at once in explicit_step: rate, its diagonal, their difference


def explicit_step(p: torch.Tensor, pi: torch.Tensor, h: float) -> torch.Tensor:
    """(I + h·R̂)p with R̂[i, j] = (π_i/π_j)·Q[j, i] built as a B×K×K tensor (the reference code's form)."""
    k = p.shape[1]
    rate = pi[:, :, None] / pi[:, None, :] / k  # off-diagonal entries, Q[j, i] = 1/K
    rate = rate - torch.diag_embed(rate.sum(1))  # columns sum to zero
    out = p + h * torch.bmm(rate, p[:, :, None])[..., 0]
    return out.clamp(0, 1) / out.clamp(0, 1).sum(-1, keepdim=True)


def linear_step(p: torch.Tensor, pi: torch.Tensor, h: float) -> torch.Tensor:
    """The same step through :meth:`UniformProcess.reverse_rate_matvec`, O(B·K) memory."""
    from diffcls.didicm import UniformProcess

    out = p + h * UniformProcess(p.shape[1]).reverse_rate_matvec(p, pi)
    return out.clamp(0, 1) / out.clamp(0, 1).sum(-1, keepdim=True)


def measure(form: str, classes: int, batch: int, inner: int, threads: int) -> dict:
    """One subprocess's measurement: peak extra memory of the first step, median seconds of ``inner`` steps."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    pi = torch.softmax(torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    step = explicit_step if form == "kxk" else linear_step
    step(p[:2], pi[:2], 0.1)  # import and warm up before the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(inner):
        tic = time.perf_counter()
        step(p, pi, 0.1)
        times.append(time.perf_counter() - tic)
        if len(times) == 1:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return {
        "form": form,
        "classes": classes,
        "batch": batch,
        "peak_mib": peak_kib / 1024,
        "seconds": statistics.median(times),
    }


def kxk_gib(classes: int, batch: int) -> float:
    """Estimated peak of the K×K form in GiB."""
    return KXK_TENSORS * 8 * batch * classes**2 / 2**30


def run_form(form: str, classes: int, args) -> dict[str, float]:
    """Median peak (MiB) and seconds over ``--repeats`` fresh subprocesses."""
    command = [
        sys.executable,
        __file__,
        "--child",
        form,
        str(classes),
        str(args.batch),
        str(args.inner),
        str(args.threads),
    ]
    runs = [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(args.repeats)
    ]
    return {key: statistics.median(r[key] for r in runs) for key in ("peak_mib", "seconds")}


def mib(value: float) -> str:
    """A peak in MiB; ru_maxrss cannot see growth below about 0.1 MiB (freed heap pages are reused)."""
    return f"{value:.1f}" if value >= 0.1 else "< 0.1"


def table_rows(classes: int, linear: dict, kxk: dict | None, args) -> list[list[str]]:
    """The O(K) row and the K×K row (measured, or skipped with its reason) of one K."""
    rows = [
        [
            f"{classes:,}",
            str(args.batch),
            "O(K)",
            mib(linear["peak_mib"]),
            f"{linear['seconds']:.6f}",
            f"{linear['seconds'] / classes * 1e9:,.0f}",
            "",
            "",
        ]
    ]
    if kxk is None:
        reason = f"skipped: needs ≈ {kxk_gib(classes, args.batch):,.1f} GiB > --max-gib {args.max_gib:g}"
        rows.append([f"{classes:,}", str(args.batch), "K×K", reason, "", "", "", ""])
    else:
        memory = f"{kxk['peak_mib'] / linear['peak_mib']:.0f}×" if linear["peak_mib"] >= 0.1 else "—"
        rows.append(
            [
                f"{classes:,}",
                str(args.batch),
                "K×K",
                mib(kxk["peak_mib"]),
                f"{kxk['seconds']:.6f}",
                "",
                f"{kxk['seconds'] / linear['seconds']:.1f}×",
                memory,
            ]
        )
    return rows


def slopes(classes: list[int], seconds: list[float]) -> str:
    """Log-log slopes of the O(K) step's time between consecutive K (1 = linear growth)."""
    parts = [
        f"{math.log(t1 / t0) / math.log(k1 / k0):.2f} ({k0:,}→{k1:,})"
        for k0, k1, t0, t1 in zip(classes, classes[1:], seconds, seconds[1:])
    ]
    return ", ".join(parts) if parts else "one K only"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per (form, K)")
    ap.add_argument("--inner", type=int, default=5, help="steps timed in each subprocess (their median)")
    ap.add_argument("--max-gib", type=float, default=8.0, help="skip the K×K form where its peak would exceed this")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        form, *numbers = args.child
        print(json.dumps(measure(form, *map(int, numbers))))
        return
    torch.set_num_threads(args.threads)  # so the header names the subprocesses' threads
    rows, linear_seconds = [], []
    for k in args.classes:
        linear = run_form("linear", k, args)
        kxk = run_form("kxk", k, args) if kxk_gib(k, args.batch) <= args.max_gib else None
        rows += table_rows(k, linear, kxk, args)
        linear_seconds.append(linear["seconds"])
    columns = [
        "K",
        "batch",
        "form",
        "peak extra memory (MiB)",
        "seconds per step",
        "O(K): time ÷ K (ns)",
        "time K×K ÷ O(K)",
        "memory K×K ÷ O(K)",
    ]
    notes = [
        (
            f"float64 probabilities, {args.threads} threads; medians of {args.inner} steps in each of "
            f"{args.repeats} fresh subprocesses. O(K) form, log-log slope of time against K: "
            f"{slopes(args.classes, linear_seconds)}; 1 is linear growth, below 1 the fixed cost of a step "
            "still shows. Peaks below 0.1 MiB are under what ru_maxrss resolves (— : no ratio)."
        )
    ]
    report(
        "cp-step-scaling",
        "DiDiCM-CP step against the number of classes",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()

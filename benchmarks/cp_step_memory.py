"""Peak memory and time of one DiDiCM-CP Euler step: the O(B·K) form against the explicit K×K rate matrix.

Each form runs in a fresh subprocess; the peak is the growth of the process's maximum resident set size
(ru_maxrss) over a baseline taken after the inputs were allocated, so it counts only the step's temporaries.

    .venv/bin/python benchmarks/cp_step_memory.py --classes 1000 --batch 256 --repeats 3

Prints a markdown table (median over repeats).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


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


def measure(form: str, classes: int, batch: int) -> dict:
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    pi = torch.softmax(torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    step = explicit_step if form == "kxk" else linear_step
    step(p[:2], pi[:2], 0.1)  # import and warm up before the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tic = time.perf_counter()
    step(p, pi, 0.1)
    seconds = time.perf_counter() - tic
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return {"form": form, "classes": classes, "batch": batch, "peak_mib": peak_kib / 1024, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="+", default=[1000])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    print("| K | batch | form | peak extra memory (MiB) | seconds | ratio K×K / O(K) memory |")
    print("|---|---|---|---|---|---|")
    for k in args.classes:
        rows = {}
        for form in ("linear", "kxk"):
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", form, str(k), str(args.batch)],
                                              capture_output=True, text=True, check=True).stdout)
                    for _ in range(args.repeats)]
            rows[form] = {key: statistics.median(r[key] for r in runs) for key in ("peak_mib", "seconds")}
        ratio = rows["kxk"]["peak_mib"] / max(rows["linear"]["peak_mib"], 1e-3)
        for form, label, ratio_cell in (("linear", "O(K)", ""), ("kxk", "K×K", f"{ratio:.0f}×")):
            r = rows[form]
            print(f"| {k} | {args.batch} | {label} | {r['peak_mib']:.1f} | {r['seconds']:.4f} | {ratio_cell} |")

if __name__ == "__main__":
    main()

"""Exact ties at the end of DiDiCM-CP, and the tie-free Euler variants, against the number of steps.

The reference Euler step clamps p to [0, 1]; in the last step (sigma ~ 1e-5) every class that overshoots 1 is
clamped to 1, so rows end in exact ties that argmax breaks by class index. ``euler-lower`` clamps only below;
``euler-tiebreak`` orders the final ties by p before the last step; ``analytic`` is the exact step.

Oracle mode (default, no network): the score is the exact concrete score log p_sigma(j)/p_sigma(c) of Dirichlet(
alpha) class posteriors p0, so every error is the sampler's own. Labels are drawn from p0; "agree" is top-1
agreement with p0's argmax on the rows where p0's top class leads by >= --margin; the p0 row is the Bayes
reference. Checkpoint mode (``--checkpoint DIR --data SPEC``): the same updates on a trained DiDiCM checkpoint,
against the data set's labels.

    .venv/bin/python benchmarks/cp_ties.py
    .venv/bin/python benchmarks/cp_ties.py --checkpoint runs/didicm --data mnist5k --split test --limit 1000

Prints a markdown table with its command and date.
"""

from __future__ import annotations

import argparse
import datetime

import torch

from _harness import command_line, markdown_table  # benchmarks/_harness.py
from diffcls.didicm import CP_UPDATES, SamplerConfig, UniformProcess, cp_sample, sample_categorical
from diffcls.inference.metrics import classification_metrics, tie_rate

COLUMNS = ["steps", "update", "tie rate", "exact ties", "agree (clear rows)", "top-1", "NLL", "ECE"]


def dirichlet_posteriors(n: int, k: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """(n, k) float64 rows drawn from Dirichlet(alpha)."""
    g = torch._standard_gamma(torch.full((n, k), alpha, dtype=torch.float64), generator=generator)
    return g / g.sum(-1, keepdim=True)


def exact_score(p0: torch.Tensor):
    """``score_fn(c_t, sigma) -> (N, K)``: log p_sigma(j) - log p_sigma(c_t), p_sigma the uniform marginal of p0."""
    process = UniformProcess(p0.shape[1])

    def score_fn(c_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        log_q = process.marginal(p0, sigma.double()).log()
        return (log_q - log_q.gather(1, c_t[:, None])).float()

    return score_fn


def row(steps: str, name: str, probs: torch.Tensor, metrics: dict, agree: float | None) -> list[str]:
    """One table row from ``classification_metrics`` of ``probs`` (N, K), plus the exact-tie rate and the
    agreement with p0's argmax (None: no known posterior)."""
    agreement = "—" if agree is None else f"{agree:.3f}"
    ties = f"{tie_rate(probs, rtol=1e-6):.3f}", f"{metrics['tie_rate']:.3f}"
    return [steps, name, *ties, agreement, *(f"{metrics[k]:.3f}" for k in ("top1", "nll", "ece"))]


def oracle_rows(args) -> tuple[list[list[str]], str]:
    """Rows of the p0 reference and of every (steps, update) driven by the exact score of Dirichlet posteriors."""
    g = torch.Generator().manual_seed(args.seed)
    p0 = dirichlet_posteriors(args.rows, args.classes, args.alpha, g)
    labels = sample_categorical(p0, g)
    top2 = p0.topk(2).values
    clear = top2[:, 0] - top2[:, 1] >= args.margin

    def measured(steps: str, name: str, probs: torch.Tensor) -> list[str]:
        agree = (probs.argmax(-1) == p0.argmax(-1))[clear].double().mean().item()
        return row(steps, name, probs, classification_metrics(probs, labels), agree)

    rows = [measured("—", "p0 (Bayes)", p0.float())]
    for steps in args.steps:
        for update in CP_UPDATES:
            rows.append(
                measured(str(steps), update, cp_sample(exact_score(p0), args.rows, args.classes, steps, update=update))
            )
    setup = (
        f"Oracle score of Dirichlet({args.alpha:g}) posteriors p0, K = {args.classes}, N = {args.rows}, seed "
        f"{args.seed}; top-1, NLL and ECE against labels drawn from p0; clear rows (p0's top class leads by >= "
        f"{args.margin:g}): {clear.double().mean().item():.3f} of all."
    )
    return rows, setup


def checkpoint_rows(args) -> tuple[list[list[str]], str]:
    """Rows of every (steps, update) on a trained DiDiCM checkpoint, against the data set's labels. The model, the
    split and its corruption are loaded once; only the readout changes between rows."""
    from diffcls.data import TransformConfig, load_source
    from diffcls.eval.evaluate import corrupt_split, evaluate_model, held_out_images, select_split
    from diffcls.methods import get_method, load_classifier

    model, mconfig = load_classifier(args.checkpoint, args.device)
    method = get_method(mconfig["method"])
    if not method.uses_sampler:
        raise SystemExit(f"{args.checkpoint} is not a DiDiCM checkpoint (its readout takes no sampler)")
    source = load_source(args.data)
    split = select_split(source, args.split, args.limit, **held_out_images(mconfig))
    if args.corruption:
        split, _ = corrupt_split(split, source, args.corruption, args.severity, workers=1, progress=False)
    transform = TransformConfig.from_dict(mconfig["transform"])
    rows = []
    for steps in args.steps:
        for update in CP_UPDATES:
            sampler = SamplerConfig("cp", steps=steps, cp_update=update)
            results, probs = evaluate_model(
                method, model, split, transform, sampler, device=args.device, seed=args.seed, batch_size=args.batch_size
            )
            rows.append(row(str(steps), update, probs, results, None))
    corrupted = f" under {args.corruption}/{args.severity}" if args.corruption else ""
    setup = (
        f"Checkpoint {args.checkpoint}, data {args.data}, split {args.split}{corrupted}, "
        f"{results['num_samples']} images."
    )
    return rows, setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 64])
    ap.add_argument("--alpha", type=float, default=0.3, help="Dirichlet concentration of the oracle's posteriors")
    ap.add_argument("--classes", type=int, default=10, help="K of the oracle")
    ap.add_argument("--rows", type=int, default=2000, help="posteriors (images) of the oracle")
    ap.add_argument("--margin", type=float, default=0.1, help="lead of p0's top class on the 'clear' rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="a trained DiDiCM folder: measure it instead of the oracle")
    ap.add_argument("--data", help="data spec of --checkpoint (as diffcls eval --data)")
    ap.add_argument("--split", default="test", help="split of --data (default: test)")
    ap.add_argument("--limit", type=int, help="a fixed stratified subset of this many images")
    ap.add_argument("--corruption", help="corrupt the images first (as diffcls eval --corruption)")
    ap.add_argument("--severity", type=int, help="severity of --corruption (1..5)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.checkpoint and not args.data:
        ap.error("--checkpoint needs --data")
    rows, setup = checkpoint_rows(args) if args.checkpoint else oracle_rows(args)
    print(f"`{command_line()}`, torch {torch.__version__}, {datetime.date.today()}\n")
    print(markdown_table(COLUMNS, rows))
    print(
        f"\n{setup} Tie rate: rows whose top two probabilities are within 1e-6 (relative); exact ties: equal. "
        "euler-tiebreak orders its ties by p before the last step but keeps their values (< 1.2e-7 apart), so "
        "its rows count as ties at 1e-6 but not as exact ties."
    )


if __name__ == "__main__":
    main()

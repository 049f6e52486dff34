"""The accuracy–cost frontier of every contender and readout, side by side on the same test images (issue 21).

    .venv/bin/python benchmarks/frontier.py --twin DIR --plain DIR --didicm DIR --didicm-late DIR --ddpm DIR \
        [--data mnist5k] [--limit 500] [--corruption contrast] [--output runs/frontier] [--write-docs]
    .venv/bin/python benchmarks/frontier.py --zoo   # the models shipped in the zoo (zoo:mnist5k-standard, ...)

Every readout is one ``diffcls eval`` on the same fixed stratified subset (``--limit``) of the test split, clean
and under severity-5 ``--corruption`` (results files in ``--output`` are reused, so an interrupted run resumes):

* the twin and the plain ResNet (softmax, 1 NFE);
* DiDiCM: CP-1/2/4/8 (the library's update), CL 10×4, one-pass; the late-conditioned DiDiRN with CP-4/8;
* the Diffusion Classifier with a multi-head ε-network (``--ddpm-multihead``): flat-10/20/50, all classes in one
  pass per timestep;
* the Diffusion Classifier: flat-10/20/50, the adaptive 10→50 schedule (keep 3→1) and the paper's CIFAR-10
  schedule (50→500, keep 5→1), per-image early stopping on flat-50 (α = 0.01 and 0.1), and hybrids (the twin's
  top-2 scored by flat-10/24/50, its top-3 by flat-50, and its top-2/3 raced on flat-50 with early stopping).

It prints one markdown table per condition (top-1, NLL, ECE, NFE per image, ms per image, and whether the readout
is on the Pareto front of top-1 against ms per image: no other readout is both faster and at least as accurate)
and draws ``frontier.png`` (top-1 against ms per image and against NFE, log x, the front joined). Milliseconds are
measured by ``diffcls eval`` itself (one process at a time; quote them only from one run). The Diffusion
Classifier's NLL and ECE use the λ stored in the DDPM folder (fit it first: ``diffcls eval --split val --limit 200
--fit-temperature ...``), else λ = 1 (nearly uniform). ``--write-docs`` puts the tables into docs/performance.md
and the plot into docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _harness import header, markdown_table, write_section  # benchmarks/_harness.py

CLASSIFIER_READOUTS = {  # label: (model flag, eval flags)
    "twin (softmax)": ("twin", []),
    "plain ResNet (softmax)": ("plain", []),
    **{f"DiDiCM CP-{k}": ("didicm", ["--sampler", "cp", "--steps", str(k)]) for k in (1, 2, 4, 8)},
    "DiDiCM CL 10×4": ("didicm", ["--sampler", "cl", "--chains", "10", "--steps", "4"]),
    "DiDiCM one-pass": ("didicm", ["--sampler", "onepass"]),
    **{f"DiDiCM late1 CP-{k}": ("didicm_late", ["--sampler", "cp", "--steps", str(k)]) for k in (4, 8)},
}
DC_READOUTS = {  # label: eval flags (with --checkpoint DDPM)
    **{f"DC flat-{m}": ["--schedule", f"flat-{m}"] for m in (10, 20, 50)},
    "DC adaptive 10→50 (keep 3→1)": ["--n-samples", "10,50", "--to-keep", "3,1"],
    "DC paper CIFAR-10 (50→500, keep 5→1)": ["--schedule", "cifar10"],
    **{f"DC flat-50, early stop α={a}": ["--schedule", "flat-50", "--early-stop", str(a)] for a in (0.01, 0.1)},
}
ZOO_MODELS = {  # args attribute: mnist5k zoo entry
    "twin": "mnist5k-standard",
    "plain": "mnist5k-plain",
    "didicm": "mnist5k-didicm",
    "didicm_late": "mnist5k-didicm-late1",
    "ddpm": "mnist5k-ddpm",
    "ddpm_multihead": "mnist5k-ddpm-multihead",
}
MULTIHEAD_READOUTS = {f"DC multi-head flat-{m}": ["--schedule", f"flat-{m}"] for m in (10, 20, 50)}
HYBRID_READOUTS = {  # label: (the twin's top-k, DC flags): the proposed classes scored, or raced
    **{f"hybrid: twin top-2 + DC flat-{m}": (2, ["--schedule", f"flat-{m}"]) for m in (10, 24, 50)},
    "hybrid: twin top-3 + DC flat-50": (3, ["--schedule", "flat-50"]),
    **{
        f"hybrid: twin top-{k} + DC flat-50, early stop α=0.1": (k, ["--schedule", "flat-50", "--early-stop", "0.1"])
        for k in (2, 3)
    },
}


def run_eval(args: list[str], results: Path) -> dict:
    if not results.is_file():
        command = ["eval", *args, "--results-file", str(results)]
        print("$ diffcls " + " ".join(command), flush=True)
        subprocess.run([sys.executable, "-m", "diffcls.cli", *command], check=True)
    return json.loads(results.read_text())


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-").lower()


def pareto(rows: list[dict], cost: str = "ms") -> set[str]:
    """Labels on the front of top-1 against ``cost`` (ms or NFE per image): no other row costs at most as much
    and is at least as accurate, one of the two strictly."""
    front = set()
    for r in rows:
        dominated = any(
            o[cost] <= r[cost] and o["top1"] >= r["top1"] and (o[cost] < r[cost] or o["top1"] > r["top1"]) for o in rows
        )
        if not dominated:
            front.add(r["label"])
    return front


def skipped(args: argparse.Namespace, label: str, tag: str) -> bool:
    """Whether ``--skip`` (all conditions) or ``--skip-corrupted`` (the corrupted one) leaves this readout out."""
    drop = args.skip + (args.skip_corrupted if tag != "clean" else [])
    return any(part in label for part in drop)


def measure(args: argparse.Namespace, condition: list[str], tag: str) -> list[dict]:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--data", args.data, "--limit", str(args.limit), *condition]
    rows = []
    models = {"twin": args.twin, "plain": args.plain, "didicm": args.didicm, "didicm_late": args.didicm_late}
    for label, (model, flags) in CLASSIFIER_READOUTS.items():
        if models[model] and not skipped(args, label, tag):
            r = run_eval(["--checkpoint", models[model], *common, *flags], out / f"{tag}-{slug(label)}.json")
            rows.append({"label": label, **r})
    if args.ddpm:
        dc = ["--checkpoint", args.ddpm, *common, "--batch-size", str(args.dc_batch)]
        for label, flags in DC_READOUTS.items():
            if skipped(args, label, tag):
                continue
            rows.append({"label": label, **run_eval([*dc, *flags], out / f"{tag}-{slug(label)}.json")})
        if args.twin:
            for label, (k, flags) in HYBRID_READOUTS.items():
                if skipped(args, label, tag):
                    continue
                flags = [*flags, "--proposer", args.twin, "--proposer-top-k", str(k)]
                rows.append({"label": label, **run_eval([*dc, *flags], out / f"{tag}-{slug(label)}.json")})
    if args.ddpm_multihead:  # one ε head per class: every class in one network evaluation per timestep
        dc = ["--checkpoint", args.ddpm_multihead, *common, "--batch-size", str(args.dc_batch)]
        for label, flags in MULTIHEAD_READOUTS.items():
            rows.append({"label": label, **run_eval([*dc, *flags], out / f"{tag}-{slug(label)}.json")})
    for r in rows:
        r["ms"] = r["ms_per_image"]
    return rows


def table(rows: list[dict]) -> str:
    front, front_nfe = pareto(rows), pareto(rows, "nfe_per_image")
    body = [
        [
            str(number),
            r["label"],
            f"{r['top1']:.3f}",
            f"{r['nll']:.3f}",
            f"{r['ece']:.3f}",
            f"{r['nfe_per_image']:.1f}",
            f"{r['ms']:.2f}",
            "yes" if r["label"] in front else "",
            "yes" if r["label"] in front_nfe else "",
        ]  # fmt: skip
        for number, r in numbered(rows)
    ]
    columns = ["#", "readout", "top-1", "NLL", "ECE", "NFE / image", "ms / image", "front (ms)", "front (NFE)"]
    return markdown_table(columns, body)


def numbered(rows: list[dict]) -> list[tuple[int, dict]]:
    """The rows by time per image, numbered from 1: the table's ``#`` and the plot's point labels."""
    return list(enumerate(sorted(rows, key=lambda r: r["ms"]), start=1))


def plot(conditions: dict[str, list[dict]], path: Path) -> None:
    """top-1 against ms and against NFE per image, one row of panels per condition; points carry the table's
    numbers (the labels overlap where readouts tie). The y axis starts 0.1 below the slowest readout on the
    front, so the crowd near the top stays apart; readouts below it are drawn on the bottom edge as triangles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(conditions), 2, figsize=(12, 4.2 * len(conditions)), squeeze=False)
    for (name, rows), (ax_ms, ax_nfe) in zip(conditions.items(), axes):
        for ax, key, xlabel in ((ax_ms, "ms", "ms per image"), (ax_nfe, "nfe_per_image", "NFE per image")):
            front = pareto(rows, key)
            on_front = sorted((r for r in rows if r["label"] in front), key=lambda r: r[key])
            floor = max(0.0, min(r["top1"] for r in on_front) - 0.1)
            for number, r in numbered(rows):
                colour = "C3" if r["label"].startswith(("DC", "hybrid")) else "C0"
                below = r["top1"] < floor
                marker = "v" if below else "*" if r["label"] in front else "o"
                y = floor if below else r["top1"]
                ax.scatter(r[key], y, color=colour, marker=marker, s=60 if marker == "*" else 20, zorder=3)
                ax.annotate(str(number), (r[key], y), fontsize=7, xytext=(3, 2), textcoords="offset points")
            ax.plot([r[key] for r in on_front], [r["top1"] for r in on_front], "--", color="grey", zorder=1)
            ax.set_ylim(floor - 0.01, 1.0 if floor > 0.5 else None)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("top-1")
            ax.set_title(f"{name}: top-1 against {xlabel}", fontsize=10)
            ax.grid(alpha=0.3)
    fig.suptitle("numbers: the table's #; stars and dashes: the Pareto front; blue: classifiers, red: Diffusion "
                 "Classifier and hybrids; triangles: below the axis", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("twin", "plain", "didicm", "didicm-late", "ddpm", "ddpm-multihead"):
        parser.add_argument(f"--{name}", default=None, metavar="DIR")
    parser.add_argument("--zoo", action="store_true", help="the mnist5k zoo entries for every model not given")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--corruption", default="contrast", help="the severity-5 condition (none: clean only)")
    parser.add_argument("--dc-batch", type=int, default=256, help="network rows per pass of the DC")
    parser.add_argument("--output", default="runs/frontier")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--skip", action="append", default=[], metavar="TEXT", help="leave out readouts whose label contains TEXT"
    )
    parser.add_argument(
        "--skip-corrupted",
        action="append",
        default=[],
        metavar="TEXT",
        help="... under the corruption only (e.g. 'CIFAR-10': the paper's schedule costs 2,750 NFE per image)",
    )
    args = parser.parse_args()
    if args.zoo:
        for flag, entry in ZOO_MODELS.items():
            setattr(args, flag, getattr(args, flag) or f"zoo:{entry}")
    conditions = {"clean": measure(args, [], "clean")}
    if args.corruption != "none":
        name = f"{args.corruption}, severity 5"
        conditions[name] = measure(args, ["--corruption", args.corruption, "--severity", "5"], args.corruption)
    text = "\n\n".join(f"**{name}** ({len(rows)} readouts)\n\n{table(rows)}" for name, rows in conditions.items())
    print(text)
    figure = Path(args.output) / "frontier.png"
    plot(conditions, figure)
    if args.write_docs:
        docs_figure = Path("docs/benchmarks/frontier.png")
        docs_figure.parent.mkdir(parents=True, exist_ok=True)
        docs_figure.write_bytes(figure.read_bytes())
        body = "\n\n".join([header(1), text, "![frontier](benchmarks/frontier.png)"])
        write_section("frontier", "Accuracy against cost: the frontier", body)


if __name__ == "__main__":
    main()

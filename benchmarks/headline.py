"""The headline table of one or more benchmark folders: DiDiCM against its twin under each hard condition.

    python benchmarks/headline.py docs/benchmarks/mnist5k docs/benchmarks/fashion-mnist

Reads each folder's ``rows.jsonl`` (a finished ``diffcls bench`` run, or its copy without weights) and prints,
per folder, one markdown row per headline condition: clean, all corruptions and each corruption family at the
worst severity, each scarce-data protocol and each low resolution trained and tested at RES. Each row holds the
twin's and DiDiCM's top-1 (mean ± std over training seeds), Δ with whether it lies beyond the seed spread, and its
95% paired-bootstrap interval over test images: the same statistics as the report (``diffcls.bench.stats``), so
the README's tables are this script's output, not a transcription. With two or more folders it also prints Δ
side by side, one column per data set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffcls.bench.stats import Series, at_severity, bootstrap_gain, gain, is_clean, percent, seed_stat, worst_severity

PROTOCOLS = {
    "data_ratio": "of the data, the reference's protocol (same epochs)",
    "data_ratio_eq": "of the data, equal steps (our variant)",
}


def load_rows(folder: Path) -> list[dict]:
    path = folder / "rows.jsonl"
    if not path.is_file():
        sys.exit(f"error: {path} does not exist (give a benchmark folder)")
    rows = []
    for line in path.read_text().splitlines():
        try:  # a running benchmark's last line may be cut short; JsonlLog skips it the same way (read-only here)
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def headline_conditions(rows: list[dict]) -> list[tuple[str, object]]:
    """(label, predicate) of the headline conditions present in ``rows``."""
    conditions: list[tuple[str, object]] = [("clean", is_clean)]
    worst = worst_severity(rows)
    if worst is not None:
        names = {r["corruption"] for r in rows if r["kind"] == "corruption"}
        conditions.append((f"{len(names)} corruptions, severity {worst}", at_severity(worst)))
        for family in sorted({r["family"] for r in rows if r["kind"] == "corruption"}):
            count = len({r["corruption"] for r in rows if r.get("family") == family})
            conditions.append(
                (
                    f"{family} ({count} corruptions), severity {worst}",
                    lambda r, f=family: at_severity(worst)(r) and r["family"] == f,
                )
            )
    for kind, words in PROTOCOLS.items():
        for ratio in sorted({r["data_ratio"] for r in rows if r["kind"] == kind}, reverse=True):
            conditions.append(
                (f"{percent(ratio)} {words}", lambda r, k=kind, x=ratio: r["kind"] == k and r["data_ratio"] == x)
            )
    for res in sorted({r["low_res"] for r in rows if r["kind"] == "low_res"}, reverse=True):
        conditions.append(
            (f"trained and tested at {res} px", lambda r, x=res: r["kind"] == "low_res" and r["low_res"] == x)
        )
    return conditions


def cell(stat: tuple | None) -> str:
    return "–" if stat is None else f"{stat[0]:.3f} ± {stat[1]:.3f}"


def headline(rows: list[dict], base: Series, new: Series) -> list[dict]:
    """One dict per headline condition: label, base and new top-1, Δ, beyond-spread verdict and interval."""
    out = []
    for label, where in headline_conditions(rows):
        delta, beyond = gain(rows, base, new, where)
        if delta is None:
            continue
        interval = bootstrap_gain(rows, base, new, where)
        out.append(
            {
                "condition": label,
                "base": seed_stat(rows, base, where),
                "new": seed_stat(rows, new, where),
                "delta": delta[0],
                "beyond": beyond,
                "interval": interval,
            }
        )
    return out


def delta_text(entry: dict) -> str:
    verdict = {"yes": "yes, above" if entry["delta"] > 0 else "yes, below"}.get(entry["beyond"], entry["beyond"])
    return f"{entry['delta']:+.3f} ({verdict})"


def interval_text(entry: dict) -> str:
    return "–" if entry["interval"] is None else "[{:+.3f}, {:+.3f}]".format(*entry["interval"])


def print_table(entries: list[dict], base: Series, new: Series) -> None:
    """The markdown table of :func:`headline`'s entries."""
    print(f"| condition | {base.label} | {new.label} | Δ (beyond the seed spread?) | Δ 95% CI over test images |")
    print("|---|---|---|---|---|")
    for e in entries:
        print(f"| {e['condition']} | {cell(e['base'])} | {cell(e['new'])} | {delta_text(e)} | {interval_text(e)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="benchmark folders (each holding rows.jsonl)")
    parser.add_argument("--readout", default="CP-8 lower-clamp", help="DiDiCM's readout (default: the library's CP-8)")
    args = parser.parse_args(argv)
    base = Series("standard", "softmax", "standard twin")
    new = Series("didicm", args.readout, f"DiDiCM {args.readout}")

    tables = {}
    for folder in args.folders:
        name = folder.name if folder.name not in tables else str(folder)
        tables[name] = headline(load_rows(folder), base, new)
        print(f"\n### {name}\n")
        print_table(tables[name], base, new)
    if len(tables) > 1:
        print(f"\n### Δ = {new.label} − {base.label}, side by side\n")
        print("| condition | " + " | ".join(tables) + " |")
        print("|---|" + "---|" * len(tables))
        labels = list(dict.fromkeys(e["condition"] for entries in tables.values() for e in entries))
        for label in labels:
            cells = []
            for entries in tables.values():
                e = next((e for e in entries if e["condition"] == label), None)
                cells.append("–" if e is None else f"{delta_text(e)} {interval_text(e)}")
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

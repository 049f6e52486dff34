"""What the benchmark scripts share: interleaved medians, the header line, markdown tables and their section of
docs/performance.md.

A script prints ``header`` (its exact command, the machine and the date), a markdown table and notes; with
``--write-docs`` the same text replaces the script's section of docs/performance.md, the part between
``<!-- benchmark:KEY -->`` and ``<!-- /benchmark:KEY -->`` (appended under a ``## title`` heading the first time).
Text outside the markers, the heading and any prose around the table included, is kept.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository
DOCS = ROOT / "docs" / "performance.md"


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def interleaved_medians(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per case over ``repeats`` rounds; every round runs every case once, in turn, so a change of
    machine load hits all cases alike and their ratios stay fair. ``warmup`` untimed rounds come first."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(seconds(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def random_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` seeded random 3 × size × size images in [-1, 1], the range of the eval transform's output."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def command_line() -> str:
    """The command that ran this script, as typed in the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def header(repeats: int) -> str:
    """The line above a table: command, machine (platform, threads, torch) and date."""
    return (
        f"`{command_line()}` on {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {datetime.date.today()}; median of {repeats}"
    )


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, body: str, path: Path | None = None) -> None:
    """Replace the text between this key's markers in ``path`` (default: docs/performance.md) by ``body``
    (atomically), or append a section."""
    path = path or DOCS
    start, end = f"<!-- benchmark:{key} -->", f"<!-- /benchmark:{key} -->"
    text = path.read_text()
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, path.stat().st_mode & 0o777)  # keep the file's permissions (a temp file gets 0600)
    os.replace(tmp.name, path)


def report(key: str, title: str, repeats: int, table: str, notes: list[str], write_docs: bool) -> None:
    """Print header, table and notes; with ``write_docs`` also put them into docs/performance.md."""
    body = "\n\n".join([header(repeats), table, *notes])
    print(body)
    if write_docs:
        write_section(key, title, body)
        print(f"\n(written to {DOCS}, section {key!r})")


def bench_eval(
    model: Path,
    data: str,
    limit: int,
    condition: str,
    flags: list[str],
    cache: Path,
    results: Path,
    save_probs: Path | None = None,
) -> Path:
    """``diffcls eval`` of ``model`` on a benchmark's test images (its ``eval_limit``) under ``condition``
    ("clean" or "name/severity", the corrupted images from the benchmark's ``cache``) with readout ``flags``; writes
    ``results`` (and ``save_probs``) and returns ``results``. Skipped when those files exist: a finished evaluation
    is reused. The command is printed."""
    if results.is_file() and (save_probs is None or save_probs.is_file()):
        return results
    results.parent.mkdir(parents=True, exist_ok=True)
    command = ["eval", "--checkpoint", str(model), "--data", data, "--limit", str(limit), *flags]
    if save_probs is not None:
        command += ["--save-probs", str(save_probs)]
    command += ["--results-file", str(results), "--seed", "0"]
    if condition != "clean":
        name, severity = condition.split("/")
        command += ["--corruption", name, "--severity", severity, "--corruption-cache", str(cache)]
    print("$ diffcls " + " ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "diffcls.cli", *command], check=True, stdout=subprocess.DEVNULL)
    return results

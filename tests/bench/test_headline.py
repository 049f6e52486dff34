"""benchmarks/headline.py: the README's headline table is the report's statistics, read back from a bench folder."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("headline", ROOT / "benchmarks" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_row(report: str, label: str) -> list[str]:
    """The cells of the report's row ``label`` in its low-resolution (paper's protocol) table."""
    section = report.split("## Low resolution: the paper's protocol")[1].split("##")[0]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_headline_agrees_with_the_report_of_the_same_rows(tmp_path, capsys):
    """Two conditions of a small copy of the mnist5k run: the twin, DiDiCM and the gain as the report wrote them."""
    rows = [json.loads(line) for line in (ROOT / "docs/benchmarks/mnist5k/rows.jsonl").read_text().splitlines()]
    keep = [r for r in rows if r["kind"] in ("clean", "low_res") and r["contender"] in ("standard", "didicm")]
    for name in ("mnist5k", "copy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    load_script().main([str(tmp_path / "mnist5k"), str(tmp_path / "copy")])
    printed = capsys.readouterr().out
    report = (ROOT / "docs/benchmarks/mnist5k/report.md").read_text()
    for label, ours in (("native", "clean"), ("8 px", "trained and tested at 8 px")):
        _, twin, _, lower_clamp, _, _, delta, beyond, interval = report_row(report, label)
        line = next(line for line in printed.splitlines() if line.startswith(f"| {ours} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:3] == [twin, lower_clamp]
        assert cells[3] == f"{delta.split(' ± ')[0]} ({beyond}, below)"
        assert cells[4] == interval
    side_by_side = printed.split("side by side")[1]
    assert "| condition | mnist5k | copy |" in side_by_side
    assert len(re.findall(r"\| trained and tested at 8 px \|", side_by_side)) == 1


def test_a_folder_without_rows_is_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="rows.jsonl does not exist"):
        load_script().main([str(tmp_path)])

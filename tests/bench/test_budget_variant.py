"""benchmarks/budget_variant.py: the variant's rows pair with the grid's, and its seed summary is the report's."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CONDITIONS = [("clean", "clean", None, None, 0), ("fog/5", "corruption", "fog", "weather", 5)]


def load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its imports of _harness.py and headline.py
    spec = importlib.util.spec_from_file_location("budget_variant", ROOT / "benchmarks" / "budget_variant.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outcome_row(contender: str, readout: str, seed: int, condition: tuple, correct: np.ndarray) -> dict:
    name, kind, corruption, family, severity = condition
    return {
        "contender": contender, "readout": readout, "seed": seed, "condition": name, "kind": kind,
        "corruption": corruption, "family": family, "severity": severity, "data_ratio": 1.0,
        "top1": float(correct.mean()), "correct": "".join("1" if c else "0" for c in correct),
    }  # fmt: skip


def summary_line(printed: str, against: str, label: str) -> list[str]:
    section = printed.split(f"against {against}")[1].split("###")[0]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_variant_rows_and_their_seed_summary(monkeypatch, capsys):
    script = load_script(monkeypatch)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=60)
    rows, made, twin_clean = [], [], []
    for seed in range(3):
        for condition in CONDITIONS:
            twin = rng.random(60) < 0.5
            rows.append(outcome_row("standard", "softmax", seed, condition, twin))
            rows.append(outcome_row("didicm", "CP-8 lower-clamp", seed, condition, rng.random(60) < 0.4))
            probs = rng.dirichlet(np.ones(4), size=60).astype(np.float32)
            made.append(script.variant_row(rows[-1], "CP-8 lower-clamp, 160 epochs", probs, labels))
            assert made[-1]["correct"] == "".join("1" if p.argmax() == y else "0" for p, y in zip(probs, labels))
            assert (made[-1]["condition"], made[-1]["seed"]) == (condition[0], seed)
            if condition[0] == "clean":
                twin_clean.append(twin.mean())
    scarce = {"condition": "data_ratio/0.05", "data_ratio": 0.05, "kind": "data_ratio", "top1": 0.0}
    rows.append({**rows[0], **scarce})  # a condition the variant was not evaluated on: ignored

    script.print_summary(rows, made, "CP-8 lower-clamp")
    printed = capsys.readouterr().out
    variant_clean = [r["top1"] for r in made if r["condition"] == "clean"]
    _, twin_cell, variant_cell, delta, interval = summary_line(printed, "standard twin", "clean")
    assert twin_cell == f"{statistics.fmean(twin_clean):.3f} ± {statistics.stdev(twin_clean):.3f}"
    assert variant_cell.startswith(f"{statistics.fmean(variant_clean):.3f} ±")
    assert delta.startswith(f"{statistics.fmean(variant_clean) - statistics.fmean(twin_clean):+.3f}")
    assert interval.startswith("[")  # per-image outcomes of both sides are present, so it is bootstrapped
    grid_fog = [r["top1"] for r in rows if r["contender"] == "didicm" and r["condition"] == "fog/5"]
    variant_fog = [r["top1"] for r in made if r["condition"] == "fog/5"]
    _, grid_cell, _, delta, _ = summary_line(printed, "the grid", "weather (1 corruptions), severity 5")
    assert grid_cell.startswith(f"{statistics.fmean(grid_fog):.3f}")
    assert delta.startswith(f"{statistics.fmean(variant_fog) - statistics.fmean(grid_fog):+.3f}")


def test_protocol_models_are_evaluated_on_the_condition_they_were_trained_for(monkeypatch, capsys):
    script = load_script(monkeypatch)
    preset = {"low_res": [16, 12, 8]}
    full = {"data_ratio": 1.0, "equal_steps": False, "img_size": 32}
    assert script.trained_condition(full, preset) is None
    assert script.trained_condition({**full, "img_size": 16}, preset) == "low_res/16"
    assert script.trained_condition({**full, "data_ratio": 0.05}, preset) == "data_ratio/0.05"
    assert script.trained_condition({**full, "data_ratio": 0.05, "equal_steps": True}, preset) == "data_ratio_eq/0.05"

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=50)
    low_res = ("low_res/16", "low_res", None, None, None)
    rows, made, gains = [], [], []
    for seed in range(3):
        for condition in (CONDITIONS[0], low_res):
            rows.append(outcome_row("standard", "softmax", seed, condition, rng.random(50) < 0.6))
            rows[-1]["low_res"] = 16 if condition is low_res else None
            rows.append({**rows[-1], "contender": "didicm", "readout": "CP-8 lower-clamp"})
        assert script.find_row(rows, "didicm", "CP-8 lower-clamp", seed, "low_res/16") is rows[-1]
        probs = rng.dirichlet(np.ones(4), size=50)
        made.append(script.variant_row(rows[-1], "CP-8 lower-clamp, 160 epochs", probs, labels))
        gains.append(made[-1]["top1"] - rows[-2]["top1"])
    script.print_summary(rows, made, "CP-8 lower-clamp")
    printed = capsys.readouterr().out
    *_, delta, _ = summary_line(printed, "standard twin", "trained and tested at 16 px")
    assert delta.startswith(f"{statistics.fmean(gains):+.3f}")
    assert "| clean |" not in printed  # the full-data rows of the same seeds are not the variant's conditions

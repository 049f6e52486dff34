"""benchmarks/repcond_comparison.py and repcond_diagnosis.py: a cached result stands for the weights it scored."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the diagnosis imports the comparison
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_result_is_reused_only_for_the_weights_it_scored(tmp_path, monkeypatch):
    cached = load_script("repcond_comparison", monkeypatch).cached
    folder = tmp_path / "seed1" / "tune-unc-random-0.1"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    results = tmp_path / "tune-unc-random-0.1.json"
    assert not cached(results, folder)  # nothing yet
    results.write_text(json.dumps({"checkpoint": str(tmp_path / "seed0" / "tune-unc-random-0.1")}))
    assert not cached(results, folder)  # another seed's folder of the same name
    results.write_text(json.dumps({"checkpoint": str(folder)}))
    assert cached(results, folder)
    later = results.stat().st_mtime + 10
    os.utime(folder / "model.safetensors", (later, later))  # the folder was trained again after the evaluation
    assert not cached(results, folder)


@pytest.mark.parametrize(
    "script, flags", [("repcond_comparison", ["--arms", "twin,magic"]), ("repcond_diagnosis", ["--fractions", "0.5"])]
)
def test_unknown_arms_or_fractions_are_one_line_errors(script, flags, monkeypatch, capsys):
    module = load_script(script, monkeypatch)
    monkeypatch.setattr(sys, "argv", [script, "--output", "unused", *flags])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    assert ("magic" if "--arms" in flags else "0.5") in capsys.readouterr().err


def test_paired_gains_against_the_per_seed_differences(monkeypatch):
    script = load_script("repcond_comparison", monkeypatch)
    new, base = "rep-cond", "scratch"
    outcomes = {  # (arm, seed): per-image outcomes on 10 test images
        (new, 0): "1111111100", (base, 0): "1111110000",  # +0.2
        (new, 1): "1111111110", (base, 1): "1111111100",  # +0.1
        (new, 2): "1111111000", (base, 2): "1111100000",  # +0.2
    }  # fmt: skip
    table = {
        (arm, 0.1): [{"top1": outcomes[arm, s].count("1") / 10, "correct": outcomes[arm, s]} for s in (0, 1, 2)]
        for arm in (new, base)
    }
    (row,) = script.paired_gains(table, [0.1], new, [base])
    cells = [c.strip() for c in row.strip("|").split("|")]
    # mean and std of {0.2, 0.1, 0.2}; the seeds' top-1s overlap (0.7-0.9 against 0.5-0.8)
    assert cells[:4] == ["scratch", "10%", "+0.167 ± 0.058", "no"]
    low, high = (float(x) for x in cells[4].strip("[]").split(","))
    assert 0 <= low <= 0.167 <= high <= 0.3  # new is never worse on any image, and gains at most 3 of 10 per seed

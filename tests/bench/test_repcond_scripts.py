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
    "script, flags, named",
    [
        ("repcond_comparison", ["--arms", "twin,magic"], "magic"),
        ("repcond_comparison", ["--budget-scale", "1,two"], "1,two"),
        ("repcond_comparison", ["--budget-scale", "0"], "positive"),
        ("repcond_comparison", ["--val-every", "0"], "--val-every"),
        ("repcond_diagnosis", ["--fractions", "0.5"], "0.5"),
    ],
)
def test_bad_arms_fractions_or_budgets_are_one_line_errors(script, flags, named, monkeypatch, capsys):
    module = load_script(script, monkeypatch)
    monkeypatch.setattr(sys, "argv", [script, "--output", "unused", *flags])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    assert named in capsys.readouterr().err


def test_each_arm_and_seed_is_compared_at_the_budget_its_validation_accuracy_picks(tmp_path, monkeypatch, capsys):
    """``--budget-scale 1,2`` tunes every arm at 100 and 200 epochs (1% labels) and keeps, per arm and seed, the
    budget with the higher validation accuracy (a tie keeps the shorter); the tables and the JSON say which."""
    script = load_script("repcond_comparison", monkeypatch)
    val = {  # (arm, seed, epochs): validation accuracy (the t-sweep's best on the held-out images)
        ("rnd-random", 0, 100): 0.55, ("rnd-random", 0, 200): 0.63,  # the longer budget helps scratch
        ("rnd-random", 1, 100): 0.61, ("rnd-random", 1, 200): 0.65,
        ("unc-random", 0, 100): 0.62, ("unc-random", 0, 200): 0.60,  # not the unconditional arm on seed 0
        ("unc-random", 1, 100): 0.60, ("unc-random", 1, 200): 0.60,  # a tie keeps 100
        ("pre-class-mean", 0, 100): 0.64, ("pre-class-mean", 0, 200): 0.66,
        ("pre-class-mean", 1, 100): 0.63, ("pre-class-mean", 1, 200): 0.62,
    }  # fmt: skip
    trained, tuning_flags = [], []

    def fake_train(folder, args, epochs, seed, common=None):
        trained.append((folder.name, epochs, seed))
        if folder.name.startswith("tune-"):
            tuning_flags.append(" ".join(args))
        return folder

    def fake_dc_zero(folder, out, draws):
        key = folder.name.removeprefix("tune-").removesuffix("-x2").removesuffix("-0.01")
        seed, epochs = int(folder.parent.name.removeprefix("seed")), 200 if folder.name.endswith("-x2") else 100
        v = val[key, seed, epochs]
        correct = "1" * round(v * 100) + "0" * (100 - round(v * 100))  # test top-1 = val, 100 test images
        return {"top1": v, "f1": v, "t": 400, "top1_draws": v, "f1_draws": v, "val": v, "correct": correct}

    curve = {
        "t": script.LOSS_TIMESTEPS,
        **{k: [0.1] * len(script.LOSS_TIMESTEPS) for k in ("with_r", "null_r", "uncond")},
    }
    monkeypatch.setattr(script, "train", fake_train)
    monkeypatch.setattr(script, "dc_zero", fake_dc_zero)
    monkeypatch.setattr(script, "plateau_note", lambda *a: "+0.0000")
    monkeypatch.setattr(script, "loss_by_t", lambda models: curve)
    monkeypatch.setattr(script, "r_statistics", lambda models: {"spread": 0.2})
    monkeypatch.setattr(
        script, "probes", lambda models, f: {"r": {"top1": 0.5, "f1": 0.5}, "pixels": {"top1": 0.5, "f1": 0.5}}
    )
    arms = "pre-class-mean,unc-random,rnd-random"
    argv = [
        "x",
        "--output",
        str(tmp_path),
        "--seeds",
        "0,1",
        "--fractions",
        "0.01",
        "--arms",
        arms,
        "--budget-scale",
        "2,1",
        "--figures",
        str(tmp_path / "figures"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()

    tuned = {(name, epochs, seed) for name, epochs, seed in trained if name.startswith("tune-")}
    assert tuned == {
        (f"tune-{a}-0.01{x}", e, s) for a in arms.split(",") for x, e in (("", 100), ("-x2", 200)) for s in (0, 1)
    }
    assert all("--val-every 10" in flags for flags in tuning_flags)  # validation every 10th epoch by default
    saved = json.loads((tmp_path / "comparison-chosen.json").read_text())
    chosen = {(r["arm"], r["seed"]): r["epochs"] for r in saved["budgets_tried"] if r["chosen"]}
    label = {key: script.ARMS[key][0] for key in arms.split(",")}
    assert chosen == {
        (label["rnd-random"], 0): 200, (label["rnd-random"], 1): 200,
        (label["unc-random"], 0): 100, (label["unc-random"], 1): 100,
        (label["pre-class-mean"], 0): 200, (label["pre-class-mean"], 1): 100,
    }  # fmt: skip
    assert [r["top1"] for r in saved["table"][f"{label['rnd-random']} @ 0.01"]] == [0.63, 0.65]
    printed = capsys.readouterr().out
    # the comparison row: the mean over seeds of the chosen budgets' top-1 (0.66, 0.63 -> 0.645)
    row = next(line for line in printed.splitlines() if line.startswith(f"| {label['pre-class-mean']} | 0.6"))
    assert "0.645 ± 0.021" in row
    # paired gain over scratch at the chosen budgets: (0.66 - 0.63, 0.63 - 0.65) -> +0.005 ± 0.035
    gains = printed.split("## Paired gains")[1].splitlines()
    gain = next(line for line in gains if line.startswith(f"| {label['rnd-random']} | 1% |"))
    assert "+0.005 ± 0.035" in gain
    assert printed.count("| yes |") == 6
    assert (tmp_path / "figures" / "budgets_1pct.png").read_bytes().startswith(b"\x89PNG")  # accuracy vs budget


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

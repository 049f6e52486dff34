"""The contender interface: row keys and readouts of the default contenders, roles, and a new contender added to a
tiny preset (trained, measured, reported) that joins a finished benchmark without retraining the others."""

from __future__ import annotations

import dataclasses
import json

import pytest

from diffcls.bench import CONTENDERS, OPTIONAL_CONTENDERS, Benchmark, BenchPreset, Condition, DCSettings, Lineup, Task
from diffcls.bench.contenders import DIDICM, PLAIN_RESNET, STANDARD_TWIN
from diffcls.bench.grid import Training
from diffcls.didicm import SamplerConfig

# A second DiDiCM: the optional contender on DiDiRN's late-conditioned variant (only its last stage sees c_t, σ).
LATE = OPTIONAL_CONTENDERS["late1"]

SMALL = BenchPreset(
    name="small",
    epochs=1,
    lr=4e-3,
    warmup_epochs=0,
    seeds=(0,),
    data_ratios=(),
    corruptions=("contrast",),
    severities=(5,),
    low_res=(),
    grid_seeds=1,
    cp_steps=(1,),
    cl_runs=(),
    hard_condition=None,
    batch_size=16,
    trajectory_images=1,
    grid_sampler=SamplerConfig("cp", steps=1, cp_update="euler"),
)
WITH_LATE = dataclasses.replace(SMALL, contenders=CONTENDERS + (LATE,))


def test_row_keys_and_readouts_of_the_default_contenders():
    clean = Condition("clean")
    assert Task(STANDARD_TWIN, 0, clean, None).key == "standard|r1|s0|clean|softmax"
    scarce, cl = Condition("data_ratio", data_ratio=0.05), SamplerConfig("cl", steps=8, chains=10)
    assert Task(DIDICM, 2, scarce, cl).key == "didicm|r0.05|s2|data_ratio/0.05|cl-10x8"
    small = Condition("low_res", low_res=16)
    assert Task(DIDICM, 1, small, SamplerConfig("onepass")).key == "didicm|r1-16px|s1|low_res/16|onepass"
    dc = DCSettings(n_samples=(4, 16), to_keep=(2, 1), test_images=50, calibration_images=50)
    assert Task(dc.contender(), 0, clean, dc).key == "dc|r1|s0|clean|dc-n4,16-k2,1-i50-c50"
    assert STANDARD_TWIN.readout_fields(None) == {
        "readout": "softmax",
        "sampler": "softmax",
        "cp_update": None,
        "steps": None,
        "chains": None,
    }
    assert DIDICM.readout_fields(SamplerConfig("onepass")) == {
        "readout": "one-pass",
        "sampler": "onepass",
        "cp_update": None,
        "steps": None,
        "chains": None,
    }
    preset = BenchPreset(name="p", epochs=1, cp_steps=(1, 2), cl_runs=((10, 4),))
    assert [DIDICM.readout_label(s) for s in DIDICM.sweep_readouts(preset)] == [
        "CP-1",
        "CP-2",
        "CP-1 analytic",
        "CP-2 analytic",
        "CL 10×4",
        "one-pass",
    ]
    assert PLAIN_RESNET.grid_readouts(preset) == [None] and dc.contender().sweep_readouts(preset) == []


def test_roles_of_the_default_lineup():
    lineup = Lineup.default()
    assert [c.key for c in lineup] == ["standard", "plain", "didicm", "dc"]
    assert (lineup.baseline, lineup.compared, lineup.trajectory) == (STANDARD_TWIN, DIDICM, DIDICM)
    assert lineup.swept == [DIDICM]


def test_contenders_are_not_part_of_the_recorded_preset():
    # An output folder of the default contenders resumes with a new one added (it adds only its own rows).
    assert "contenders" not in WITH_LATE.to_dict() and WITH_LATE.comparable() == SMALL.comparable()


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """SMALL run with the default contenders, then again with LATE added, in the same folder."""
    from datafiles import write_npz

    root = tmp_path_factory.mktemp("contenders")
    data = f"npz:{write_npz(root / 'blobs.npz')}"
    Benchmark(SMALL, data, root / "out", device="cpu", workers=0, progress=False).run()
    stamps = {p: p.stat().st_mtime_ns for p in (root / "out" / "models").glob("*/model.safetensors")}
    benchmark = Benchmark(WITH_LATE, data, root / "out", device="cpu", workers=0, progress=False)
    return benchmark, benchmark.run(), stamps


def test_a_new_contender_is_trained_measured_and_reported(joined):
    benchmark, paths, _ = joined
    config = json.loads((benchmark.model_dir(LATE, Training(), 0) / "config.json").read_text())
    assert (config["method"], config["model"]) == ("didicm", "didirn_small_late1")
    assert (benchmark.model_dir(LATE, Training(), 0) / "model.safetensors").is_file()
    rows = json.loads((benchmark.out / "results.json").read_text())
    late = {(r["condition"], r["readout"]) for r in rows if r["contender"] == "didicm-late1"}
    assert late == {
        ("clean", "CP-1"),
        ("clean", "one-pass"),
        ("contrast/5", "CP-1"),
        ("contrast/5", "one-pass"),
        ("clean", "CP-1 analytic"),
    }  # the grid readouts everywhere, its NFE sweep on clean
    assert all(r["label"] == "DiDiCM late-1" for r in rows if r["contender"] == "didicm-late1")
    report = paths["report"].read_text()
    for text in (
        "| DiDiCM late-1 CP-1 |",
        "DiDiCM late-1 one-pass top-1",
        "| DiDiCM late-1 CP-1 analytic | 1 |",
        "**DiDiCM late-1** (DiDiCM whose last stage alone sees the label and σ, so the first stages run once per "
        "image; read out by `CP-1` and by `one-pass`)",
        "| didicm-late1-r1-s0 |",
    ):
        assert text in report, text
    assert "Δ DiDiCM CP-1 − twin" in report  # the gain still compares DiDiCM with its twin


def test_a_new_contender_joins_without_retraining_the_others(joined):
    benchmark, _, stamps = joined
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    keys = [json.loads(line)["key"] for line in (benchmark.out / "rows.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len(WITH_LATE.tasks())


def test_unknown_optional_contender_is_one_line(tmp_path, capsys):
    from diffcls.cli import main

    assert main(["bench", "--with", "late2", "--data", "digits", "--output", str(tmp_path / "b")]) == 2
    assert "unknown contender 'late2'; choose from late1" in capsys.readouterr().err


def test_bench_budget_flag_is_checked_in_one_line(tmp_path, capsys):
    from diffcls.cli import main

    out = str(tmp_path / "b")
    assert main(["bench", "--budget", "didicm", "--data", "digits", "--output", out]) == 2
    assert "--budget takes KEY=EPOCHS" in capsys.readouterr().err
    assert main(["bench", "--budget", "late=5", "--data", "digits", "--output", out]) == 2
    assert "no contender 'late' in this benchmark; keys: didicm, standard" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before anything is written


def test_a_rows_top1_and_outcomes_are_the_methods_decision_where_it_has_one():
    """A Measurement with ``prediction`` (the Diffusion Classifier's survivor) gives its top-1 and per-image
    outcomes; the argmax of the probabilities is kept beside as top1_of_probabilities."""
    import torch

    from diffcls.bench.contenders import Measurement
    from diffcls.bench.runner import result_row

    probs = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    labels = torch.tensor([1, 1, 0, 1])  # argmax right on 3 of 4
    task = Task(STANDARD_TWIN, 0, Condition("clean"), None)
    plain = result_row(task, Measurement(probs, labels, 1.0, 1))
    assert plain["top1"] == 0.75 and plain["correct"] == "0111" and "top1_of_probabilities" not in plain
    decided = result_row(task, Measurement(probs, labels, 1.0, 1, prediction=torch.tensor([1, 1, 1, 0])))
    assert decided["top1"] == 0.5 and decided["correct"] == "1100" and decided["top1_of_probabilities"] == 0.75
    assert decided["nll"] == plain["nll"]  # the probabilities' metrics are unchanged

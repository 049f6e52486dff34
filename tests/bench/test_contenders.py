"""The contender interface: row keys and readouts of the default contenders, roles, and a new contender added to a
tiny preset (trained, measured, reported) that joins a finished benchmark without retraining the others."""

from __future__ import annotations

import dataclasses
import json

import pytest

from diffcls.bench import CONTENDERS, Benchmark, BenchPreset, ClassifierContender, Condition, DCSettings, Lineup, Task
from diffcls.bench.contenders import DIDICM, PLAIN_RESNET, STANDARD_TWIN
from diffcls.didicm import SamplerConfig

# A second DiDiCM: the same recipe on DiDiRN's late-conditioned variant (only its last stage sees c_t and σ).
LATE = ClassifierContender(
    "late",
    "DiDiCM late-1",
    "didicm",
    "didirn_small_late1",
    colour="C5",
    description="DiDiCM with only the last stage conditioned",
)

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
    grid_sampler=SamplerConfig("cp", steps=1),
)
WITH_LATE = dataclasses.replace(SMALL, contenders=CONTENDERS + (LATE,))


def test_row_keys_and_readouts_of_the_default_contenders():
    clean = Condition("clean")
    assert Task(STANDARD_TWIN, 1.0, 0, clean, None).key == "standard|r1|s0|clean|softmax"
    assert Task(DIDICM, 0.05, 2, clean, SamplerConfig("cl", steps=8, chains=10)).key == "didicm|r0.05|s2|clean|cl-10x8"
    dc = DCSettings(n_samples=(4, 16), to_keep=(2, 1), test_images=50, calibration_images=50)
    assert Task(dc.contender(), 1.0, 0, clean, dc).key == "dc|r1|s0|clean|dc-n4,16-k2,1-i50-c50"
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
    config = json.loads((benchmark.model_dir(LATE, 1.0, 0) / "config.json").read_text())
    assert (config["method"], config["model"]) == ("didicm", "didirn_small_late1")
    assert (benchmark.model_dir(LATE, 1.0, 0) / "model.safetensors").is_file()
    rows = json.loads((benchmark.out / "results.json").read_text())
    late = {(r["condition"], r["readout"]) for r in rows if r["contender"] == "late"}
    assert late == {
        ("clean", "CP-1"),
        ("clean", "one-pass"),
        ("contrast/5", "CP-1"),
        ("contrast/5", "one-pass"),
        ("clean", "CP-1 analytic"),
    }  # the grid readouts everywhere, its NFE sweep on clean
    assert all(r["label"] == "DiDiCM late-1" for r in rows if r["contender"] == "late")
    report = paths["report"].read_text()
    for text in (
        "| DiDiCM late-1 CP-1 |",
        "DiDiCM late-1 one-pass top-1",
        "| DiDiCM late-1 CP-1 analytic | 1 |",
        "**DiDiCM late-1** (DiDiCM with only the last stage conditioned; read out by `CP-1` and by `one-pass`)",
        "| late-r1-s0 |",
    ):
        assert text in report, text
    assert "Δ DiDiCM CP-1 − twin" in report  # the gain still compares DiDiCM with its twin


def test_a_new_contender_joins_without_retraining_the_others(joined):
    benchmark, _, stamps = joined
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    keys = [json.loads(line)["key"] for line in (benchmark.out / "rows.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len(WITH_LATE.tasks())

"""A tiny ``diffcls bench`` run read back: rows, tables, plots, resume after a kill, and its errors."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from diffcls.bench import CONTENDERS, Benchmark, BenchPreset, Condition, DCSettings, summary_table
from diffcls.bench.grid import Training
from diffcls.bench.runner import copy_without_weights
from diffcls.cli import main
from diffcls.didicm import SamplerConfig
from diffcls.errors import DiffclsError

TINY = BenchPreset(
    name="tiny",
    epochs=2,
    lr=4e-3,
    warmup_epochs=0,
    seeds=(0,),
    data_ratios=(0.5,),
    corruptions=("gaussian_noise", "contrast"),
    severities=(2, 5),
    low_res=(8,),
    shift_low_res=(6,),
    grid_seeds=1,
    cp_steps=(1, 2),
    cl_runs=((3, 2),),
    hard_condition=("contrast", 5),
    batch_size=16,
    trajectory_images=2,
    grid_sampler=SamplerConfig("cp", steps=2),  # the library's CP step (euler-lower) ...
    extra_readouts=(SamplerConfig("cp", steps=2, cp_update="euler"),),  # ... and the reference's beside it
    diffusion_classifier=DCSettings(
        model="unet_tiny", test_images=8, calibration_images=8, n_samples=(2, 4), to_keep=(2, 1), val_images=4
    ),
)
DC_NFE = 4 * 2 + 2 * (4 - 2)  # 4 classes on 2 timesteps, then the best 2 on 2 more


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The tiny preset on the 4-class 12-px blobs, run once for the module."""
    from datafiles import write_npz

    root = tmp_path_factory.mktemp("bench")
    data = f"npz:{write_npz(root / 'blobs.npz')}"
    benchmark = Benchmark(TINY, data, root / "out", device="cpu", workers=0, progress=False)
    paths = benchmark.run()
    return benchmark, paths


GRID_CONDITIONS = 1 + 1 + 1 + 1 + 2 * 2  # clean, 50 % data, trained at 8 px, a 6-px view, 2 corruptions × 2 severities
DC_ROWS = GRID_CONDITIONS - 1  # one per grid condition but the paper's low resolution (it trains at its own size)


def expected_row_count() -> int:
    # Per condition and seed: twin 1, plain 1, DiDiCM 3 (grid sampler, the reference's CP, one-pass) = 5 rows.
    sweep_extra = (2 * 2 + 1) - 1  # CP euler/analytic × 2 steps + CL, minus the CP-2 euler already in the grid
    return 5 * GRID_CONDITIONS + sweep_extra * 2 + DC_ROWS  # the sweep runs on clean and on contrast/5


def test_bench_writes_every_row_once(bench):
    benchmark, _ = bench
    rows = json.loads((benchmark.out / "results.json").read_text())
    assert len(rows) == len({r["key"] for r in rows}) == expected_row_count()
    with open(benchmark.out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for column in ("contender", "sampler", "steps", "nfe", "condition", "top1", "nll", "ece", "tie_rate", "seconds"):
        assert column in table[0]
    # NFE is exact for each readout; accuracies are fractions; reliability bins count every test image.
    for r in rows:
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 and 0.0 <= r["tie_rate"] <= 1.0
        # a softmax never ties exactly; CP's clamped step and CL's chain histograms can
        assert r["tie_rate"] == 0.0 or r["sampler"] not in ("softmax", "onepass")
        assert sum(r["reliability"]["count"]) == r["num_samples"] == (8 if r["contender"] == "dc" else 20)
        expected_nfe = {
            "softmax": 1,
            "onepass": 1,
            "cp": r["steps"],
            "cl": (r["chains"] or 0) * (r["steps"] or 0),
            "diffusion-classifier": DC_NFE,
        }
        assert r["nfe"] == expected_nfe[r["sampler"]]
    corrupted = [r for r in rows if r["kind"] == "corruption"]
    assert {r["family"] for r in corrupted} == {"noise", "digital"}


def test_bench_rows_carry_uncertainty_metrics_temperature_and_per_image_outcomes(bench):
    """Every row: the new metrics, a temperature fitted once per model and readout on the validation split (the
    same T in every condition), post_* metrics equal to the metrics of the rescaled probabilities (top-1 kept,
    so the per-image outcomes are those of the raw probabilities), and a per-image outcome string that the
    row's top-1 is the mean of."""
    benchmark, _ = bench
    rows = json.loads((benchmark.out / "results.json").read_text())
    temperatures: dict = {}
    for r in rows:
        for key in ("brier", "ece_adaptive", "aurc", "augrc", "ms_per_image", "temperature", "post_nll", "post_ece"):
            assert key in r, key
        assert len(r["correct"]) == r["num_samples"] and set(r["correct"]) <= {"0", "1"}
        assert len(r["risk_coverage"]) == 20 and r["risk_coverage"][-1] == pytest.approx(1 - r["top1"], abs=1e-6)
        assert r["correct"].count("1") / r["num_samples"] == pytest.approx(r["top1"], abs=1e-6)
        assert r["temperature"] > 0 and sum(r["post_reliability"]["count"]) == r["num_samples"]
        if r["kind"] in ("clean", "corruption"):  # full-data models: one T per (model, readout)
            temperatures.setdefault((r["contender"], r["readout"], r["seed"]), set()).add(r["temperature"])
    assert all(len(ts) == 1 for ts in temperatures.values())
    ood = [r for r in rows if "ood" in r]
    assert {r["kind"] for r in ood} == {"clean"}
    assert {r["contender"] for r in ood} == {"standard", "plain", "didicm", "dc"}
    native = {"softmax": {"energy"}, "cp": {"wander"}, "cl": {"wander"}, "onepass": set()}
    native["diffusion-classifier"] = {"lowest_error"}
    for r in ood:
        assert set(r["ood"]) == {"noise"} and set(r["ood"]["noise"]) == {"msp", "entropy", *native[r["sampler"]]}
        assert 0 <= r["ood"]["noise"]["msp"]["ood_auroc"] <= 1 and 0 <= r["ood"]["noise"]["msp"]["ood_fpr95"] <= 1
        # msp counts in fixed bins: every test image and as many noise images
        hist = r["ood_msp_hist"]
        assert sum(hist["in-distribution"]) == sum(hist["noise"]) == r["num_samples"]
    with open(benchmark.out / "results.csv") as f:
        header = next(csv.reader(f))
    assert "post_nll" in header and "correct" not in header and "post_reliability" not in header
    assert "ood_msp_hist" not in header


def test_bench_models_learn_the_blobs(bench):
    benchmark, _ = bench
    rows = json.loads((benchmark.out / "results.json").read_text())
    clean = {(r["contender"], r["readout"]): r["top1"] for r in rows if r["kind"] == "clean"}
    # Two epochs on 80 easy images: the twin must beat chance (0.25) clearly; the report compares real models.
    assert clean[("standard", "softmax")] > 0.5


def test_bench_report_and_plots(bench):
    benchmark, paths = bench
    report = paths["report"].read_text()
    for section in (
        "## Clean test set",
        "## Corruptions by family",
        "## Scarce training data",
        "## Low resolution",
        "## NFE sweep on `clean`",
        "## NFE sweep on `contrast/5`",
        "Δ DiDiCM CP-",
        "## Calibration",
        "## After temperature scaling",
        "## Corruption error relative to the plain ResNet",
        "## Out-of-distribution detection",
        "noise: AUROC (msp)",
        "noise: AUROC (native)",
        "| lowest_error |",
        "| plain ResNet | 1.000 |",
        "Δ 95% CI (test images)",
        "Diffusion Classifier top-1",
        "subset of 8 test images",
        "## Training curves and cost",
        "| standard-r1-s0 | 2 |",  # every trained model has its plateau row: full data,
        "| didicm-r0.5-s0 | 2 |",  # a data fraction,
        "| plain-r1-8px-s0 | 2 |",  # a low-resolution training
        "| standard twin | 2 | 1 |",  # and the cost table counts the full-data models
    ):
        assert section in report, section
    names = {p.name for p in paths["plots"]}
    assert names == {
        "accuracy_vs_severity.png",
        "gain_vs_difficulty.png",
        "accuracy_vs_nfe.png",
        "cp_trajectories.png",
        "reliability.png",
        "reliability_after_temperature.png",
        "risk_coverage.png",
        "ood_histograms.png",
        "training_curves.png",
    }
    for p in paths["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    trajectories = json.loads((benchmark.out / "trajectories.json").read_text())
    first = trajectories["images"][0]
    assert len(first["probs"]) == max(TINY.cp_steps) + 1
    assert first["probs"][0] == pytest.approx([0.25] * 4)  # CP starts from the uniform distribution
    assert {im["kind"] for im in trajectories["images"]} == {"easy", "hard"}


def test_bench_resumes_after_a_kill(bench, capsys):
    benchmark, _ = bench
    log = benchmark.out / "rows.jsonl"
    lines = log.read_text().splitlines()
    # A kill in the middle of writing: the last three rows are lost and a torn line remains.
    log.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][: len(lines[-3]) // 2])
    weights = {c.key: benchmark.model_dir(c, Training(), 0) / "model.safetensors" for c in CONTENDERS}
    stamps = {k: p.stat().st_mtime_ns for k, p in weights.items()}
    again = Benchmark(TINY, benchmark.data, benchmark.out, device="cpu", workers=0, progress=False)
    again.run()
    err = capsys.readouterr().err
    assert f"resuming: {len(lines) - 3} of {len(lines)} rows" in err
    assert "[train" not in err  # trained checkpoints are reused
    assert {k: p.stat().st_mtime_ns for k, p in weights.items()} == stamps
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == len({r["key"] for r in rows}) == len(lines)


def test_bench_resumes_from_a_copy_without_weights(bench, tmp_path, capsys):
    """Rows are written model by model, so a copy of the folder without weights (another machine) resumes: only
    the model whose rows are missing is trained again, every other row is kept as it was."""
    benchmark, _ = bench
    moved = tmp_path / "moved"
    files = copy_without_weights(benchmark.out, moved)
    assert files and not any(f.suffix in (".safetensors", ".pt") for f in files)
    assert not (moved / "cache").exists() and (moved / "trajectories.json").is_file()
    log = moved / "rows.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    lost = "plain|r0.5|s0|"  # the plain ResNet trained on 50 % of the data: its rows go missing
    assert any(r["key"].startswith(lost) for r in rows)
    log.write_text("".join(json.dumps(r) + "\n" for r in rows if not r["key"].startswith(lost)))
    Benchmark(TINY, benchmark.data, moved, device="cpu", workers=0, progress=False).run()
    err = capsys.readouterr().err
    trained = [line for line in err.splitlines() if line.startswith("[train")]
    assert len(trained) == 1 and trained[0].endswith(", plain-r0.5-s0")
    again = {r["key"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert set(again) == {r["key"] for r in rows}
    assert all(again[r["key"]] == r for r in rows if not r["key"].startswith(lost))
    assert (moved / "report.md").is_file()
    with pytest.raises(DiffclsError, match="not empty"):
        copy_without_weights(benchmark.out, moved)


def test_bench_refuses_another_preset_in_the_same_folder(bench, capsys):
    benchmark, _ = bench
    code = main(["bench", "--preset", "quick", "--data", benchmark.data, "--output", str(benchmark.out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "another preset" in err and "Traceback" not in err


def test_bench_bad_data_is_one_line(tmp_path, capsys):
    assert main(["bench", "--data", "nope", "--output", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("diffcls: error: unknown data spec")


def test_condition_labels_are_distinct():
    conditions = [
        Condition("clean"),
        Condition("low_res", low_res=8),
        Condition("low_res_shift", low_res=8),
        Condition("data_ratio", data_ratio=0.05),
        Condition("data_ratio_eq", data_ratio=0.05),
        Condition("corruption", corruption="fog", severity=3),
    ]
    assert [c.label for c in conditions] == [
        "clean",
        "low_res/8",
        "low_res_shift/8",
        "data_ratio/0.05",
        "data_ratio_eq/0.05",
        "fog/3",
    ]
    # which model meets each: the paper's protocols train for their condition, the shift and corruptions do not
    assert [c.training.tag for c in conditions] == ["r1", "r1-8px", "r1", "r0.05", "r0.05eq", "r1"]
    assert [c.test_low_res for c in conditions] == [None, None, 8, None, None, None]


def test_bench_diffusion_classifier_meets_every_grid_condition_on_a_fixed_subset(bench):
    benchmark, _ = bench
    rows = json.loads((benchmark.out / "results.json").read_text())
    dc = [r for r in rows if r["contender"] == "dc"]
    grid = {r["condition"] for r in rows if r["contender"] == "standard"} - {"low_res/8"}
    assert {r["condition"] for r in dc} == grid and all(r["seed"] == 0 and r["temperature"] > 0 for r in dc)
    for r in dc:  # top-1 is the survivor's (the per-image outcomes), the probabilities' argmax beside it
        assert r["top1"] == pytest.approx(r["correct"].count("1") / len(r["correct"])) and "top1_of_probabilities" in r
    folder = benchmark.model_dir(dc_contender(), Training(0.5), 0)
    assert (folder / "model_index.json").is_file()  # a DDPMPipeline per fraction
    test = dc_contender().test_subset(benchmark)
    assert sorted(benchmark.source.test.labels[test].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]  # stratified: 2 per class
    # one per-image log per (model, condition), so a killed DC evaluation resumes image by image
    logs = sorted(p.name for p in (benchmark.out / "dc").glob("*.jsonl"))
    # + one calibration log per trained DC (full data and 50%), one OOD log (noise) of the clean row
    assert len(logs) == len(dc) + 2 + 1 and sum("-ood-noise-" in name for name in logs) == 1


def test_bench_diffusion_classifier_can_leave_and_rejoin_without_retraining(bench, capsys):
    benchmark, _ = bench
    without = dataclasses.replace(TINY, diffusion_classifier=None)
    Benchmark(without, benchmark.data, benchmark.out, device="cpu", workers=0, progress=False).run()
    rows = json.loads((benchmark.out / "results.json").read_text())
    assert not any(r["contender"] == "dc" for r in rows) and len(rows) == expected_row_count() - DC_ROWS
    Benchmark(TINY, benchmark.data, benchmark.out, device="cpu", workers=0, progress=False).run()
    assert "[train" not in capsys.readouterr().err
    assert len(json.loads((benchmark.out / "results.json").read_text())) == expected_row_count()


def dc_contender():
    return TINY.diffusion_classifier.contender()


def test_bench_under_torchrun_writes_every_row_once(tmp_path):
    """Two processes: trainings data-parallel, evaluations sharded; rank 0 alone writes rows and the report."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from datafiles import write_npz

    data = f"npz:{write_npz(tmp_path / 'blobs.npz')}"
    script = Path(__file__).with_name("tiny_bench_main.py")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            data,
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == expected_row_count()
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == expected_row_count() and (tmp_path / "out" / "report.md").is_file()
    assert done.stdout.count(summary_table(rows).splitlines()[0]) == 1  # printed by rank 0 only
    for log in (tmp_path / "out" / "dc").glob("*.jsonl"):
        rows = [json.loads(line)["key"] for line in log.read_text().splitlines()]
        assert len(rows) == len(set(rows)) == 8  # each image once (test subset and calibration images: 8 each)

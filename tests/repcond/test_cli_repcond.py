"""``diffcls train --method repcond-pretrain | repcond-tune`` and ``diffcls eval --t-sweep`` read back."""

from __future__ import annotations

import json

from diffcls.cli import main


def test_cli_pretrain_tune_and_t_sweep(tmp_path, npz_path, capsys):
    common = [
        "--data",
        f"npz:{npz_path}",
        "--img-size",
        "12",
        "-b",
        "8",
        "--lr",
        "2e-3",
        "--device",
        "cpu",
        "--val-holdout",
        "16",
        "--val-images",
        "20",
    ]
    assert (
        main(
            [
                "train",
                "--method",
                "repcond-pretrain",
                "--model",
                "dit_tiny",
                "--epochs",
                "4",
                "--output",
                str(tmp_path / "pre"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--method",
                "repcond-tune",
                "--pretrained",
                str(tmp_path / "pre"),
                "--epochs",
                "18",
                "--output",
                str(tmp_path / "tune"),
                *common,
            ]
        )
        == 0
    )
    pre = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert pre["train"]["batch_size"] == 8 and pre["train"]["weight_decay"] == 0.0  # repcond's own defaults
    capsys.readouterr()

    results = tmp_path / "dcz.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "tune"),
                "--data",
                f"npz:{npz_path}",
                "--t-sweep",
                "--results-file",
                str(results),
            ]
        )
        == 0
    )
    r = json.loads(results.read_text())
    assert [row["t"] for row in r["t_sweep"]] == list(range(50, 1000, 50))
    best = max(r["t_sweep"], key=lambda row: row["accuracy"])["accuracy"]
    assert r["timesteps"][0] in [row["t"] for row in r["t_sweep"] if row["accuracy"] == best]
    assert r["method"] == "dc-zero" and r["num_samples"] == 20 and r["nfe_per_image"] == 4
    assert r["top1"] > 0.5 and r["temperature"] > 0  # 4 classes: chance is 0.25; lambda fitted on the sweep
    assert results.with_suffix(".tsweep.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["top1"] == r["top1"]

"""``diffcls train --method repcond-pretrain | repcond-tune`` and ``diffcls eval --t-sweep`` read back."""

from __future__ import annotations

import json

import pytest

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


def test_dc_zero_with_several_noise_draws_averages_each_class_error(tmp_path, npz_path):
    """--noise-draws 3 at one t: the argmin of each class's reconstruction error averaged over three shared
    noises, computed here directly with the model; a tuned trunk-alone arm trains through the CLI flags."""
    import torch

    from diffcls.repcond import load_checkpoint
    from diffcls.repcond.dc_zero import dc_zero_errors, timestep_noise
    from diffcls.repcond.evaluate import _latents, select_split

    common = ["--data", f"npz:{npz_path}", "--img-size", "12", "-b", "8", "--device", "cpu"]
    assert main(["train", "--method", "repcond-pretrain", "--model", "dit_tiny", "--epochs", "1", *common,
                 "--output", str(tmp_path / "pre")]) == 0  # fmt: skip
    tune = ["train", "--method", "repcond-tune", "--pretrained", str(tmp_path / "pre"), "--epochs", "2", *common]
    assert main([*tune, "--label-init", "random", "--reset-injection", "--output", str(tmp_path / "tune")]) == 0
    config = json.loads((tmp_path / "tune" / "config.json").read_text())["train"]
    assert config["label_init"] == "random" and config["reset_injection"] is True
    results = tmp_path / "d.json"
    args = ["eval", "--checkpoint", str(tmp_path / "tune"), "--data", f"npz:{npz_path}", "--timesteps", "300"]
    assert main([*args, "--noise-draws", "3", "--results-file", str(results)]) == 0
    r = json.loads(results.read_text())
    assert r["noise_draws"] == 3 and r["nfe_per_image"] == 4 * 3
    loaded = load_checkpoint(tmp_path / "tune")
    images, k = select_split(loaded, None, "test")
    z0, labels = _latents(loaded, images, "cpu")
    noise = timestep_noise([300], tuple(z0.shape[1:]), 0, draws=3)
    with torch.no_grad():
        errors = torch.stack(
            [dc_zero_errors(loaded.model, z0, k, loaded.alphas_cumprod, [300], noise[d : d + 1]) for d in range(3)]
        ).mean(0)[..., 0]
    expected = (errors.argmin(1) == labels).float().mean().item()
    assert r["top1"] == pytest.approx(expected)

"""Acceptance runs of docs/results.md (slow: about 5 minutes on 2 cores; `make test-all` or `pytest -m slow`)."""

from __future__ import annotations

import json

import pytest

from diffcls.cli import main


@pytest.mark.slow
def test_standard_twin_reaches_97_percent_on_mnist5k(tmp_path):
    out = tmp_path / "std"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist5k",
                "--method",
                "standard",
                "--model",
                "didirn_small",
                "--epochs",
                "8",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert main(["eval", "--checkpoint", str(out), "--data", "mnist5k", "--results-file", str(out / "r.json")]) == 0
    assert json.loads((out / "r.json").read_text())["top1"] >= 0.97


@pytest.mark.slow
def test_didicm_cp8_reaches_97_percent_on_mnist5k(tmp_path):
    out = tmp_path / "didicm"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist5k",
                "--method",
                "didicm",
                "--model",
                "didirn_small",
                "--epochs",
                "20",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--data",
                "mnist5k",
                "--sampler",
                "cp",
                "--steps",
                "8",
                "--results-file",
                str(out / "r.json"),
            ]
        )
        == 0
    )
    assert json.loads((out / "r.json").read_text())["top1"] >= 0.97

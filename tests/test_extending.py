"""The rows of CONTRIBUTING.md's table, each done once: a new sampler, a new method and a new corruption, added
as one entry in one place, reach the command line and the results without touching anything else. (A new data
kind: tests/data/test_sources.py; a new bench contender: tests/bench/.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

import diffcls.data.corruptions as corruptions
from diffcls.bench import PRESETS
from diffcls.bench.contenders import DIDICM
from diffcls.cli import main
from diffcls.didicm import SAMPLERS, SamplerConfig, SamplerSpec, onepass_readout
from diffcls.methods import METHODS, get_method
from diffcls.methods.standard import StandardMethod, StandardObjective


class TwoPassReadout(SamplerSpec):
    """A toy readout: the mean of two one-pass readouts at two noise levels (two network calls per image)."""

    name = "twopass"
    summary = "the mean of one-pass readouts at sigma 1e-4 and 1e-2 (a test's example)"
    marker, line = "x", None

    @staticmethod
    def fn(score_fn, batch_size, num_classes, steps=1, *, generator=None, **_):
        low = onepass_readout(score_fn, batch_size, num_classes, sigma=1e-4, generator=generator)
        high = onepass_readout(score_fn, batch_size, num_classes, sigma=1e-2, generator=generator)
        return (low + high) / 2

    def nfe(self, config):
        return 2


class SmoothedStandardMethod(StandardMethod):
    """A toy method: the standard classifier with label smoothing 0.2 built in."""

    name = "standard-smoothed"
    summary = "cross-entropy with label smoothing 0.2 (a test's example)"
    options = StandardMethod.options - {"smoothing"}

    def objective(self, config, num_classes):
        return StandardObjective(num_classes, smoothing=0.2)


def train_argv(npz_path, method, model, out):
    return [
        "train",
        "--data",
        f"npz:{npz_path}",
        "--method",
        method,
        "--model",
        model,
        "--img-size",
        "16",
        "--epochs",
        "1",
        "--output",
        str(out),
    ]


def test_a_new_sampler_is_one_entry(npz_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(SAMPLERS, "twopass", TwoPassReadout())
    assert main(train_argv(npz_path, "didicm", "didirn_small", tmp_path / "d") + ["--val-sampler", "twopass"]) == 0
    results = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "d"),
                "--data",
                f"npz:{npz_path}",
                "--sampler",
                "twopass",
                "--results-file",
                str(results),
            ]
        )
        == 0
    )
    r = json.loads(results.read_text())
    assert (r["sampler"], r["nfe_per_image"]) == ("twopass", 2)
    assert SamplerConfig("twopass").label == "twopass" and SamplerConfig("twopass").fields()["steps"] is None
    # The bench's DiDiCM contender meets the NFE sweep with it (and its plot reads the spec's group and marker)
    assert SamplerConfig("twopass") in DIDICM.sweep_readouts(PRESETS["quick"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "twopass: the mean of one-pass readouts" in " ".join(capsys.readouterr().out.split())


def test_a_new_method_is_one_module(npz_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, SmoothedStandardMethod.name, SmoothedStandardMethod())
    out = tmp_path / "s"
    assert main(train_argv(npz_path, "standard-smoothed", "didirn_small", out)) == 0
    assert json.loads((out / "config.json").read_text())["method"] == "standard-smoothed"
    results = tmp_path / "r.json"
    assert main(["eval", "--checkpoint", str(out), "--data", f"npz:{npz_path}", "--results-file", str(results)]) == 0
    assert json.loads(results.read_text())["method"] == "standard-smoothed"
    capsys.readouterr()
    # Its own option set: it has smoothing built in, so --smoothing is refused with one line.
    assert main(train_argv(npz_path, "standard-smoothed", "didirn_small", tmp_path / "x") + ["--smoothing", "0.1"]) == 2
    assert "--smoothing does not apply to --method standard-smoothed" in capsys.readouterr().err
    assert isinstance(get_method("standard-smoothed"), StandardMethod)


def test_a_new_corruption_is_one_entry(monkeypatch):
    shifted = corruptions.Corruption(
        name="shift", family="digital", cifar_params=(1, 2, 3, 4, 5), cifar_fn=lambda x, c, rng: np.roll(x, c, axis=1)
    )
    monkeypatch.setitem(corruptions.CORRUPTIONS, "shift", shifted)
    corruptions.check_corruption("shift", 3, "cifar")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = corruptions.corrupt_image(image, "shift", 3, "cifar", seed=0)
    np.testing.assert_array_equal(out, np.roll(image, 3, axis=1))

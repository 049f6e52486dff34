"""The command line: a train → eval → predict run read back, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from datafiles import write_image_folder
from diffcls.cli import main
from diffcls.data import load_source, stratified_order, training_splits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A standard didirn_small trained 2 epochs on digits at 16 px."""
    out = tmp_path_factory.mktemp("run") / "std"
    code = main(
        [
            "train",
            "--data",
            "digits",
            "--method",
            "standard",
            "--model",
            "didirn_small",
            "--epochs",
            "2",
            "--img-size",
            "16",
            "--lr",
            "4e-3",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_checkpoint_folder(trained):
    assert {"config.json", "model.safetensors", "metrics.csv", "training_state.pt"} <= {
        p.name for p in trained.iterdir()
    }
    lines = (trained / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,lr,val_top1,seconds" and len(lines) == 3


def test_eval_results_and_probs_agree(trained, tmp_path, capsys):
    results, probs_file = tmp_path / "r.json", tmp_path / "p.npy"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(trained),
                "--data",
                "digits",
                "--results-file",
                str(results),
                "--save-probs",
                str(probs_file),
            ]
        )
        == 0
    )
    r = json.loads(results.read_text())
    for key in (
        "top1",
        "top5",
        "nll",
        "ece",
        "num_samples",
        "nfe_per_image",
        "seconds",
        "method",
        "sampler",
        "steps",
        "corruption",
        "severity",
        "per_class_top1",
    ):
        assert key in r, key
    probs = np.load(probs_file)
    labels = load_source("digits").test.labels
    assert probs.dtype == np.float32 and probs.shape == (len(labels), 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert r["top1"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert r["top1"] > 0.7 and 0 <= r["top5"] <= 1 and r["nfe_per_image"] == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == r["top1"]


def _numpy_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Brier, equal-mass ECE (15 bins), AURC and AUGRC written again in numpy, for comparison with diffcls's."""
    n = len(labels)
    onehot = np.eye(probs.shape[1])[labels]
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    by_confidence = np.argsort(confidence, kind="stable")
    ece = sum(abs(correct[b].sum() - confidence[b].sum()) for b in np.array_split(by_confidence, 15)) / n
    ranked = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(1 - correct[ranked])
    return {
        "brier": ((probs - onehot) ** 2).sum(1).mean(),
        "ece_adaptive": ece,
        "aurc": (errors / np.arange(1, n + 1)).mean(),
        "augrc": (errors / n).mean(),
        "nll": -np.log(np.maximum(probs[np.arange(n), labels], 1e-12)).mean(),
    }


def test_eval_uncertainty_metrics_and_calibration_agree_with_the_saved_probabilities(trained, tmp_path, capsys):
    """brier, ece_adaptive, aurc, augrc against numpy on --save-probs; --calibrate fits T on the checkpoint's
    validation images (not the test split) and post_* are the metrics of softmax(log p / T)."""
    results, probs_file = tmp_path / "r.json", tmp_path / "p.npy"
    args = ["eval", "--checkpoint", trained, "--data", "digits", "--results-file", results, "--save-probs", probs_file]
    assert main([str(a) for a in [*args, "--calibrate"]]) == 0
    r = json.loads(results.read_text())
    probs, labels = np.load(probs_file).astype(np.float64), load_source("digits").test.labels
    for key, value in _numpy_metrics(probs, labels).items():
        assert r[key] == pytest.approx(value, abs=1e-5), key
    assert r["ms_per_image"] == pytest.approx(1000 * r["seconds"] / len(labels), rel=0.01)

    # T: the NLL minimiser on the validation images the checkpoint held out (a grid search in numpy on their
    # probabilities, which `--split val` evaluates), not on the test split.
    val_probs_file = tmp_path / "val.npy"
    val_args = [*args[:-4], "--split", "val", "--results-file", tmp_path / "val.json", "--save-probs", val_probs_file]
    assert main([str(a) for a in val_args]) == 0
    val_probs = np.load(val_probs_file).astype(np.float64)
    val_labels = training_splits(load_source("digits").train, None, 0.1)[1].labels
    assert r["temperature_images"] == len(val_labels) == len(val_probs)
    grid = np.linspace(-2, 2, 4001)
    best = grid[np.argmin([_numpy_metrics(_scaled(val_probs, 10**x), val_labels)["nll"] for x in grid])]
    assert abs(np.log10(r["temperature"]) - best) < 2e-3
    for key, value in _numpy_metrics(_scaled(probs, r["temperature"]), labels).items():
        assert r[f"post_{key}"] == pytest.approx(value, abs=1e-4), key
    assert "temperature" in json.loads(capsys.readouterr().out.strip().splitlines()[-2])


def _scaled(probs: np.ndarray, t: float) -> np.ndarray:
    scaled = np.exp(np.log(np.maximum(probs, 1e-12)) / t)
    return scaled / scaled.sum(1, keepdims=True)


def test_predict_matches_eval_probabilities(trained, tmp_path, capsys):
    test = load_source("digits").test
    paths = []
    for i in sorted(stratified_order(test.labels)[:3]):  # the images --limit 3 picks, in data-set order
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(test.images[i][..., 0]).save(p)
        paths.append(str(p))
    probs_file = tmp_path / "p.npy"
    main(
        [
            "eval",
            "--checkpoint",
            str(trained),
            "--data",
            "digits",
            "--results-file",
            str(tmp_path / "r.json"),
            "--save-probs",
            str(probs_file),
            "--limit",
            "3",
        ]
    )
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(trained), "--top-k", "3", "--json", *paths]) == 0
    rows = json.loads(capsys.readouterr().out)
    probs = np.load(probs_file)
    for row, p in zip(rows, probs):
        top = [x["index"] for x in row["predictions"]]
        assert top == list(np.argsort(-p)[:3])
        assert row["predictions"][0]["probability"] == pytest.approx(p.max(), abs=1e-5)
    assert main(["predict", "--checkpoint", str(trained), paths[0]]) == 0
    assert capsys.readouterr().out.startswith(paths[0] + ": ")


def run_error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("diffcls: error:"), err
    return err


def test_error_cases_are_one_line(trained, tmp_path, capsys, npz_path):
    out = str(tmp_path / "o")
    train = ["train", "--method", "standard", "--model", "didirn_small", "--output", out, "--epochs", "1"]
    assert "unknown data spec" in run_error([*train, "--data", "imagenet"], capsys)
    assert "does not exist" in run_error([*train, "--data", "npz:/no/such.npz"], capsys)
    assert "unknown model" in run_error(
        ["train", "--data", "digits", "--method", "standard", "--model", "nonet", "--output", out], capsys
    )
    assert "--epochs must be >= 0" in run_error([*train, "--data", "digits", "--epochs", "-3"], capsys)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "cannot create output folder" in run_error(
        [
            "train",
            "--data",
            "digits",
            "--method",
            "standard",
            "--model",
            "didirn_small",
            "--output",
            str(blocker / "sub"),
        ],
        capsys,
    )
    bad = np.load(npz_path)
    arrays = dict(bad)
    arrays["y_test"] = arrays["y_test"] + 10
    np.savez(tmp_path / "labels.npz", **arrays)
    assert "labels must lie in" in run_error([*train, "--data", f"npz:{tmp_path / 'labels.npz'}"], capsys)
    folder = write_image_folder(tmp_path / "imgs")
    (folder / "train" / "cat" / "0.png").write_bytes(b"not an image")
    assert "cannot decode image" in run_error([*train, "--data", f"folder:{folder}", "--img-size", "16"], capsys)

    evaluate = ["eval", "--data", "digits", "--results-file", str(tmp_path / "r.json")]
    assert "not found" in run_error([*evaluate, "--checkpoint", str(tmp_path / "missing")], capsys)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"w": torch.zeros(1)}, pickled / "model.pt")
    assert "pickled weights are never loaded" in run_error([*evaluate, "--checkpoint", str(pickled)], capsys)
    x = np.zeros((13, 8, 8), np.uint8)
    np.savez(tmp_path / "k13.npz", x_train=x, y_train=np.arange(13), x_test=x, y_test=np.arange(13))
    assert "has 13 classes but the checkpoint was trained on 10" in run_error(
        [
            "eval",
            "--checkpoint",
            str(trained),
            "--data",
            f"npz:{tmp_path / 'k13.npz'}",
            "--results-file",
            str(tmp_path / "r.json"),
        ],
        capsys,
    )
    assert "cannot create output folder" in run_error(
        ["eval", "--checkpoint", str(trained), "--data", "digits", "--results-file", str(blocker / "r.json")], capsys
    )
    assert "cannot decode image" in run_error(["predict", "--checkpoint", str(trained), str(blocker)], capsys)
    assert "unknown --cp-update 'clamp'; choose from euler, euler-lower, euler-tiebreak, analytic" in run_error(
        [*evaluate, "--checkpoint", str(trained), "--cp-update", "clamp"], capsys
    )
    assert "unknown recipe 'fast'" in run_error([*train, "--data", "digits", "--recipe", "fast"], capsys)
    assert "bad --rand-augment 'rnd'" in run_error([*train, "--data", "digits", "--rand-augment", "rnd"], capsys)
    assert "--recipe does not apply to --method ddpm" in run_error(
        ["train", "--data", "digits", "--method", "ddpm", "--output", out, "--recipe", "didicm-strong"], capsys
    )


def test_unknown_method_and_flags_of_other_methods_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "o"
    err = run_error(["train", "--data", "digits", "--method", "magic", "--model", "x", "--output", str(out)], capsys)
    assert "unknown method 'magic'; choose from" in err and "standard" in err and "didicm" in err
    # A flag that the chosen method would ignore is refused, before any work (TrainConfig.from_dict dropped it)
    err = run_error(
        [
            "train",
            "--data",
            "digits",
            "--method",
            "didicm",
            "--model",
            "didirn_small",
            "--vae",
            "v",
            "--label-dropout",
            "0.1",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert "--label-dropout, --vae do not apply to --method didicm" in err
    err = run_error(
        [
            "train",
            "--data",
            "digits",
            "--method",
            "repcond-tune",
            "--pretrained",
            "p",
            "--smoothing",
            "0.1",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert "--smoothing does not apply to --method repcond-tune" in err
    assert not out.exists()


def test_console_script_help_does_not_import_torch():
    out = subprocess.run([sys.executable, "-m", "diffcls", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "bench" in out.stdout
    probe = "import sys, diffcls.cli; diffcls.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "False"  # the parsers are built without the library (~10 s of imports here)


@pytest.mark.parametrize(
    "command, listed",
    [
        ("eval", ["--results-file", "cp: diffusion over class probabilities", "gaussian_noise, shot_noise"]),
        ("train", ["didicm: discrete label diffusion on a DiDiRN backbone", "repcond-tune:", "npz:PATH (x_train"]),
    ],
)
def test_subcommand_help_lists_the_registries(command, listed, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and all(item in text for item in listed), text


def test_eval_under_a_corruption_reads_back(trained, tmp_path, capsys):
    cache = tmp_path / "cache"
    base = ["eval", "--checkpoint", str(trained), "--data", "digits", "--corruption-cache", str(cache)]
    clean, noisy = tmp_path / "clean.json", tmp_path / "noisy.json"
    assert main([*base, "--results-file", str(clean)]) == 0
    # contrast/5 (0.43 top-1 against 0.96 clean here): impulse noise on 8-px digits upscaled to 16 px hurt this
    # 2-epoch twin by less than the spread of platforms (0.964 against 0.958 clean on one of them)
    assert main([*base, "--corruption", "contrast", "--severity", "5", "--results-file", str(noisy)]) == 0
    r = json.loads(noisy.read_text())
    assert (r["corruption"], r["severity"], r["corruption_set"]) == ("contrast", 5, "cifar")  # 8 px digits
    c = json.loads(clean.read_text())
    assert r["top1"] < c["top1"] - 0.2 and r["nll"] > c["nll"]  # the corruption reached the model and hurt it
    assert len(list(cache.rglob("*.npy"))) == 1  # the corrupted test set is cached for the next run
    assert "unknown corruption" in run_error(
        [*base, "--corruption", "rain", "--severity", "2", "--results-file", str(noisy)], capsys
    )
    assert "1..5" in run_error([*base, "--corruption", "fog", "--severity", "6", "--results-file", str(noisy)], capsys)
    assert "--severity" in run_error([*base, "--corruption", "fog", "--results-file", str(noisy)], capsys)
    assert "--corruption" in run_error([*base, "--severity", "2", "--results-file", str(noisy)], capsys)


def test_bench_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "quick" in out and "full" in out and "resume" in out

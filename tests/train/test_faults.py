"""Faults: a training and a Diffusion Classifier evaluation killed with SIGKILL mid-run and resumed, a full
disk, an output folder that cannot be created.

The kills are real: the command runs in a child process that gets SIGKILL as soon as it has written some
progress, wherever it is then (inside a step, a checkpoint write or an append).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import diffcls.runtime.io as runtime_io
from datafiles import blob_images
from diffcls.cli import main
from diffcls.methods import trainer
from diffcls.runtime.checkpoint import STATE_NAME, WEIGHTS_NAME, load_training_state, load_weights
from diffcls.train.config import TrainConfig


def kill_when(args: list, ready, timeout: float = 120.0) -> None:
    """Run ``python -m diffcls.cli ARGS`` and SIGKILL it once ``ready()`` holds; fail if it ends first."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffcls.cli", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]!r}"
        assert time.monotonic() < deadline, "no progress before the timeout"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def csv_rows(path: Path) -> int:
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


def jsonl_rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_training_killed_with_sigkill_resumes_to_the_same_weights(tmp_path, npz_path):
    common = [
        "train",
        "--data",
        f"npz:{npz_path}",
        "--method",
        "didicm",
        "--model",
        "didirn_small",
        "--img-size",
        "16",
        "-b",
        "16",
        "--epochs",
        "4",
    ]
    assert main([*common, "--output", str(tmp_path / "straight")]) == 0

    killed = tmp_path / "killed"
    kill_when([*common, "--output", killed], lambda: csv_rows(killed / "metrics.csv") >= 1)
    done = load_training_state(killed / STATE_NAME)["epoch"]  # the last complete checkpoint is readable
    assert 1 <= done < 4
    assert main([*common, "--output", str(killed), "--resume"]) == 0

    a, b = load_weights(tmp_path / "straight" / WEIGHTS_NAME), load_weights(killed / WEIGHTS_NAME)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    epochs = [line.split(",")[0] for line in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]  # no epoch lost or logged twice
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]


def test_diffusion_classifier_killed_with_sigkill_resumes_without_lost_or_duplicated_images(tmp_path):
    x_tr, y_tr = blob_images(5, 4, 12, 1, seed=0)
    x_te, y_te = blob_images(12, 4, 12, 1, seed=1)  # 48 test images: 3 batches of 16
    data = tmp_path / "blobs.npz"
    np.savez(data, x_train=x_tr[..., 0], y_train=y_tr, x_test=x_te[..., 0], y_test=y_te)
    ckpt = tmp_path / "ddpm"
    trainer(
        TrainConfig(data=f"npz:{data}", method="ddpm", model="unet_tiny", output=str(ckpt), epochs=0, img_size=16),
        progress=False,
    ).fit()
    common = ["eval", "--checkpoint", ckpt, "--data", f"npz:{data}", "--schedule", "flat-60", "-b", "128"]
    assert main([*map(str, common), "--results-file", str(tmp_path / "straight.json")]) == 0

    per_image = tmp_path / "killed.images.jsonl"
    kill_when([*common, "--results-file", tmp_path / "killed.json"], lambda: jsonl_rows(per_image) >= 1 + 16)
    assert not (tmp_path / "killed.json").exists()  # results are written only at the end
    assert main([*map(str, common), "--results-file", str(tmp_path / "killed.json")]) == 0

    rows = [json.loads(line) for line in per_image.read_text().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 1 + 48  # the header and every image exactly once
    straight = json.loads((tmp_path / "straight.json").read_text())
    resumed = json.loads((tmp_path / "killed.json").read_text())
    for key in ("top1", "nll", "ece", "num_samples"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6)


def failing_fsync(after: int):
    """``os.fsync`` that works ``after`` times, then fails as a full disk does."""
    calls = [0]
    real = os.fsync

    def fsync(fd):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    return fsync


def test_a_full_disk_stops_training_with_a_clear_error_and_keeps_the_last_checkpoint(
    tmp_path, npz_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        f"npz:{npz_path}",
        "--method",
        "standard",
        "--model",
        "didirn_small",
        "--img-size",
        "16",
        "--epochs",
        "2",
        "--output",
        str(out),
    ]
    # Epoch 1's checkpoint takes 4 writes (state, weights, config, metrics); epoch 2's first write fails.
    monkeypatch.setattr(runtime_io.os, "fsync", failing_fsync(after=4))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after epoch 1's progress line
    assert err.startswith("diffcls: error: cannot write") and err.endswith("No space left on device")
    assert load_training_state(out / STATE_NAME)["epoch"] == 1  # epoch 1's checkpoint is intact
    with safe_open(str(out / WEIGHTS_NAME), "pt") as f:
        assert f.metadata()["epoch"] == "1"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind

    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert load_training_state(out / STATE_NAME)["epoch"] == 2


def test_a_full_disk_keeps_an_earlier_results_file(tmp_path, npz_path, monkeypatch, capsys):
    ckpt = tmp_path / "std"
    trainer(
        TrainConfig(
            data=f"npz:{npz_path}", method="standard", model="didirn_small", output=str(ckpt), epochs=0, img_size=16
        ),
        progress=False,
    ).fit()
    results = tmp_path / "results.json"
    args = ["eval", "--checkpoint", str(ckpt), "--data", f"npz:{npz_path}", "--results-file", str(results)]
    assert main(args) == 0
    before = results.read_bytes()
    monkeypatch.setattr(runtime_io.os, "fsync", failing_fsync(after=0))
    assert main([*args, "--limit", "3"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert results.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.npz", "results.json", "std"]  # no temp file


def test_an_output_folder_that_cannot_be_created_fails_before_any_work(tmp_path, npz_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert (
        main(
            [
                "train",
                "--data",
                f"npz:{npz_path}",
                "--method",
                "standard",
                "--model",
                "didirn_small",
                "--output",
                str(blocker / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("diffcls: error: cannot create output folder") and len(err.strip().splitlines()) == 1

"""Two processes under ``torchrun --standalone --nproc_per_node=2`` (gloo, CPU) against one process.

* Training: DDP with a per-process batch of B equals one process with a batch of 2B (the ranks split each
  global batch of a shared permutation and DDP averages their gradients) — checked on a model without
  BatchNorm, whose statistics are per rank under DDP.
* Evaluation: sharded by batches with per-batch seeds, so a stochastic sampler (CL) and the Diffusion
  Classifier give the single-process results, and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffcls.cli import main
from diffcls.methods import trainer
from diffcls.runtime.checkpoint import load_weights
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist
from diffcls.train.config import TrainConfig


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m diffcls.cli ARGS`` (one thread per process)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "diffcls.cli",
        *map(str, args),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_shard_batches_covers_every_batch_once():
    batches = list(range(7))
    shards = [Dist(rank=r, world_size=3).shard_batches(batches) for r in range(3)]
    assert sorted(j for shard in shards for j, _ in shard) == batches
    assert [len(s) for s in shards] == [3, 2, 2] and Dist(world_size=3).rounds(7) == 3
    assert SINGLE_PROCESS.shard_batches(batches) == list(enumerate(batches))
    assert SINGLE_PROCESS.all_reduce_sum([1, 2.5]) == [1.0, 2.5] and SINGLE_PROCESS.all_gather("x") == ["x"]


def test_two_process_training_equals_one_process_at_twice_the_batch(tmp_path, npz_path):
    common = [
        "--data",
        f"npz:{npz_path}",
        "--method",
        "standard",
        "--model",
        "convnext_atto",
        "--img-size",
        32,
        "--augment",
        "none",
        "--epochs",
        2,
        "--device",
        "cpu",
    ]
    done = torchrun("train", *common, "-b", 20, "--output", tmp_path / "ddp")
    assert len(json_lines(done.stdout)) == 1  # only rank 0 prints its row
    assert main(["train", *map(str, common), "-b", "40", "--output", str(tmp_path / "single")]) == 0

    ddp, single = (
        load_weights(tmp_path / "ddp" / "model.safetensors"),
        load_weights(tmp_path / "single" / "model.safetensors"),
    )
    assert ddp.keys() == single.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-6)
    rows = {name: (tmp_path / name / "metrics.csv").read_text().splitlines() for name in ("ddp", "single")}
    for a, b in zip(rows["ddp"][1:], rows["single"][1:]):  # loss reduced over ranks, validation gathered
        (ea, la, _, va, _), (eb, lb, _, vb, _) = a.split(","), b.split(",")
        assert ea == eb and va == vb and float(la) == pytest.approx(float(lb), rel=1e-5)
    assert float(rows["ddp"][-1].split(",")[3]) > 0.5  # it learned the 4 blob classes
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )


def test_two_process_evaluation_equals_one_process(tmp_path, npz_path):
    ckpt = tmp_path / "didicm"
    trainer(
        TrainConfig(
            data=f"npz:{npz_path}",
            method="didicm",
            model="didirn_small",
            output=str(ckpt),
            epochs=1,
            img_size=16,
            batch_size=16,
        ),
        progress=False,
    ).fit()
    # CL draws random labels: per-batch seeds make 3 batches (2 on rank 0, 1 on rank 1) draw what one process does
    common = [
        "eval",
        "--checkpoint",
        ckpt,
        "--data",
        f"npz:{npz_path}",
        "--sampler",
        "cl",
        "--steps",
        3,
        "--chains",
        4,
        "-b",
        7,
        "--device",
        "cpu",
    ]
    done = torchrun(*common, "--results-file", tmp_path / "ddp.json", "--save-probs", tmp_path / "ddp.npy")
    assert len(json_lines(done.stdout)) == 1
    assert (
        main(
            [*map(str, common), "--results-file", str(tmp_path / "one.json"), "--save-probs", str(tmp_path / "one.npy")]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "ddp.npy"), np.load(tmp_path / "one.npy"), atol=1e-5)
    ddp, one = json.loads((tmp_path / "ddp.json").read_text()), json.loads((tmp_path / "one.json").read_text())
    assert ddp["processes"] == 2 and one["processes"] == 1 and ddp["num_samples"] == one["num_samples"] == 20
    assert ddp["top1"] == one["top1"] and ddp["nll"] == pytest.approx(one["nll"], abs=1e-5)


def test_two_process_diffusion_classifier_equals_one_process(tmp_path, npz_path, monkeypatch):
    ckpt = tmp_path / "ddpm"
    trainer(
        TrainConfig(
            data=f"npz:{npz_path}",
            method="ddpm",
            model="unet_tiny",
            output=str(ckpt),
            epochs=1,
            img_size=16,
            batch_size=16,
        ),
        progress=False,
    ).fit()
    common = [
        "eval",
        "--checkpoint",
        ckpt,
        "--data",
        f"npz:{npz_path}",
        "--n-samples",
        "3,6",
        "--to-keep",
        "2,1",
        "--device",
        "cpu",
    ]
    torchrun(*common, "--results-file", tmp_path / "ddp.json")  # 20 images: batches of 16 and 4, one per rank
    assert main([*map(str, common), "--results-file", str(tmp_path / "one.json")]) == 0

    def rows(name):
        lines = [json.loads(line) for line in (tmp_path / f"{name}.images.jsonl").read_text().splitlines()]
        return {r["key"]: r for r in lines if r["key"] != "run"}

    ddp, one = rows("ddp"), rows("one")
    assert ddp.keys() == one.keys() and len(ddp) == 20  # every image once: no loss, no duplicate
    for key in one:
        assert ddp[key]["prediction"] == one[key]["prediction"]
        np.testing.assert_allclose(
            np.array(ddp[key]["stage_means"], dtype=float), np.array(one[key]["stage_means"], dtype=float), atol=1e-6
        )
    results = json.loads((tmp_path / "ddp.json").read_text())
    assert results["processes"] == 2 and results["top1"] == json.loads((tmp_path / "one.json").read_text())["top1"]

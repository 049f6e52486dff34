"""Training: a tiny run that learns, every option path, and resume ending with the same weights."""

from __future__ import annotations

import json

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.methods import load_classifier, trainer
from diffcls.runtime.checkpoint import STATE_NAME, WEIGHTS_NAME, load_training_state, load_weights
from diffcls.train.config import TrainConfig
from diffcls.train.loop import Trainer


def tiny_config(tmp_path, method="standard", **kw) -> TrainConfig:
    base = dict(
        data="digits",
        method=method,
        model="didirn_small",
        output=str(tmp_path / method),
        epochs=2,
        batch_size=64,
        img_size=16,
        data_ratio=0.2,
        val_sampler="cp",
        val_steps=2,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["standard", "didicm"])
def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch, method):
    straight = tiny_config(tmp_path / "a", method)
    trainer(straight, progress=False).fit()

    interrupted = tiny_config(tmp_path / "b", method)
    run = trainer(interrupted, progress=False)
    original = Trainer.train_one_epoch

    def crash_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # killed mid-run, after epoch 1 was checkpointed
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    assert load_training_state(tmp_path / "b" / method / STATE_NAME)["epoch"] == 1
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    trainer(tiny_config(tmp_path / "b", method), progress=False).fit(resume=True)

    a = load_weights(tmp_path / "a" / method / WEIGHTS_NAME)
    b = load_weights(tmp_path / "b" / method / WEIGHTS_NAME)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = (tmp_path / "a" / method / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / method / "metrics.csv").read_text().splitlines()
    assert len(rows_b) == 3 and [r.split(",")[:4] for r in rows_a] == [r.split(",")[:4] for r in rows_b]


def test_val_every_validates_and_checkpoints_every_n_epochs_and_changes_no_weight(tmp_path, monkeypatch):
    trainer(tiny_config(tmp_path / "every", epochs=4), progress=False).fit()
    sparse = tiny_config(tmp_path / "sparse", epochs=4, val_every=3)
    saved, original_save, original_epoch = [], Trainer.save, Trainer.train_one_epoch

    def spy_save(self, epoch, metrics, row):
        saved.append(epoch + 1)
        return original_save(self, epoch, metrics, row)

    def crash_in_fourth_epoch(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt  # killed after epoch 3 was checkpointed
        return original_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "save", spy_save)
    monkeypatch.setattr(Trainer, "train_one_epoch", crash_in_fourth_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer(sparse, progress=False).fit()
    assert saved == [3] and load_training_state(tmp_path / "sparse" / "standard" / STATE_NAME)["epoch"] == 3
    monkeypatch.setattr(Trainer, "train_one_epoch", original_epoch)
    trainer(tiny_config(tmp_path / "sparse", epochs=4, val_every=3), progress=False).fit(resume=True)
    assert saved == [3, 4]  # every third epoch and the last

    a = load_weights(tmp_path / "every" / "standard" / WEIGHTS_NAME)
    b = load_weights(tmp_path / "sparse" / "standard" / WEIGHTS_NAME)
    assert all(torch.equal(a[k], b[k]) for k in a)
    every, sparse_rows = (
        [r.split(",") for r in (tmp_path / name / "standard" / "metrics.csv").read_text().splitlines()[1:]]
        for name in ("every", "sparse")
    )
    assert [r[0] for r in sparse_rows] == ["1", "2", "3", "4"]  # a row per epoch, the training loss of each
    assert [r[1] for r in sparse_rows] == [r[1] for r in every]
    assert [r[3] for r in sparse_rows] == ["", "", every[2][3], every[3][3]]  # val_top1 only where validated
    with pytest.raises(DiffclsError, match="--val-every must be >= 1"):
        trainer(tiny_config(tmp_path / "bad", val_every=0), progress=False)


def test_training_state_loads_weights_only_and_config_is_json(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, ema_decay=0.9)
    trainer(cfg, progress=False).fit()
    state = torch.load(tmp_path / "standard" / STATE_NAME, weights_only=True)
    assert {"epoch", "model", "optimizer", "scheduler", "rng", "ema"} <= state.keys()
    config = json.loads((tmp_path / "standard" / "config.json").read_text())
    assert config["num_classes"] == 10 and config["transform"]["img_size"] == 16
    # With EMA on, the exported weights are the EMA weights.
    exported = load_weights(tmp_path / "standard" / WEIGHTS_NAME)
    assert all(torch.equal(exported[k], state["ema"][k]) for k in exported)


@pytest.mark.parametrize(
    "method, options",
    [
        ("standard", dict(mixup=0.2, cutmix=1.0, smoothing=0.1, opt="lamb", clip_grad=1.0)),
        ("standard", dict(opt="sgd", sched="step", low_res=8)),
        ("didicm", dict(mixup=0.2, smoothing=0.1, clip_grad=1.0)),
        ("didicm", dict(smoothing=0.1, noise="geometric")),
    ],
)
def test_option_paths_train_without_error(tmp_path, method, options):
    row = trainer(tiny_config(tmp_path, method, epochs=1, **options), progress=False).fit()
    assert row["epoch"] == 1 and row["train_loss"] > 0


def test_standard_twin_learns_digits(tmp_path):
    cfg = tiny_config(tmp_path, epochs=3, data_ratio=1.0, lr=4e-3)
    row = trainer(cfg, progress=False).fit()
    assert row["val_top1"] > 0.8, row


def test_bad_options(tmp_path):
    with pytest.raises(DiffclsError, match="--epochs"):
        trainer(tiny_config(tmp_path, epochs=-1))
    with pytest.raises(DiffclsError, match="needs a DiDiRN"):
        trainer(tiny_config(tmp_path, "didicm", model="resnet18"))
    with pytest.raises(DiffclsError, match="unknown model"):
        trainer(tiny_config(tmp_path, model="no_such_net"))
    trainer(tiny_config(tmp_path, epochs=1), progress=False).fit()
    with pytest.raises(DiffclsError, match="seed was 0"):
        trainer(tiny_config(tmp_path, epochs=1, seed=3), progress=False).fit(resume=True)
    with pytest.raises(DiffclsError, match="nothing to resume"):
        trainer(tiny_config(tmp_path / "new", epochs=1), progress=False).fit(resume=True)


def test_equal_steps_tiles_the_subset_to_the_full_length(tmp_path):
    full = trainer(tiny_config(tmp_path / "full", data_ratio=1.0, epochs=0), progress=False)
    plain = trainer(tiny_config(tmp_path / "plain", data_ratio=0.2, epochs=0), progress=False)
    equal = trainer(tiny_config(tmp_path / "equal", data_ratio=0.2, epochs=0, equal_steps=True), progress=False)
    n_full = len(full.train_set)
    assert len(plain.train_set) < n_full // 4
    assert len(equal.train_set) == n_full and equal.steps_per_epoch == full.steps_per_epoch
    # Still only the subset's images: each kept image appears about 1 / 0.2 = 5 times.
    kept = {img.tobytes() for img in plain.train_set.split.images}
    assert {img.tobytes() for img in equal.train_set.split.images} == kept


def test_late_conditioned_didicm_learns_digits_and_reloads(tmp_path):
    cfg = tiny_config(tmp_path, "didicm", model="didirn_small_late1", epochs=6, data_ratio=1.0, lr=4e-3, val_steps=8)
    row = trainer(cfg, progress=False).fit()
    assert row["val_top1"] > 0.8, row
    model, config = load_classifier(tmp_path / "didicm")
    assert config["model"] == "didirn_small_late1" and model.prefix_stages == 3

"""Training phases end to end: pretrain -> tune -> classify, save/load, resume, the leakage check."""

from __future__ import annotations

import json

import pytest
import torch

from diffcls.errors import DiffclsError
from diffcls.methods.repcond import RepCondTrainConfig, RepCondTrainer, pretrain, tune
from diffcls.repcond import load_checkpoint
from diffcls.repcond.evaluate import evaluate_dc_zero, leakage_check, probe_encoder, run_t_sweep
from diffcls.repcond.model import build_model, load_model, model_spec, save_model
from diffcls.runtime.checkpoint import STATE_NAME, WEIGHTS_NAME, load_training_state, load_weights


def config(npz_path, output, method, **kw) -> RepCondTrainConfig:
    base = dict(
        data=f"npz:{npz_path}",
        method=method,
        output=str(output),
        model="dit_tiny",
        img_size=12,
        batch_size=8,
        lr=2e-3,
        epochs=4,
        seed=0,
        device="cpu",
        val_images=20,
        val_holdout=16,
    )
    return RepCondTrainConfig(**{**base, **kw})


def test_pretrain_tune_classify_learns_the_blobs(tmp_path, npz_path):
    pretrain(config(npz_path, tmp_path / "pre", "repcond-pretrain"), progress=False)
    pretrain(config(npz_path, tmp_path / "uncond", "uncond-pretrain"), progress=False)
    last = tune(
        config(npz_path, tmp_path / "tune", "repcond-tune", pretrained=str(tmp_path / "pre"), epochs=18), progress=False
    )
    assert 0.0 <= last["val_top1"] <= 1.0 and last["val_loss"] < 0.3

    sweep = run_t_sweep(tmp_path / "tune", split="val", timesteps=[100, 300, 500, 700, 900])  # 16 held-out images
    assert len(sweep.rows()) == 5 and sweep.accuracy.max() > 0.5
    result = evaluate_dc_zero(tmp_path / "tune", split="test", timesteps=sweep.best_t)
    assert result["accuracy"] > 0.5 and result["f1_macro"] > 0.4  # chance is 0.25 with 4 classes
    assert result["num_samples"] == 20 and result["nfe_per_image"] == 4 and result["probs"].shape == (20, 4)
    multi = evaluate_dc_zero(tmp_path / "tune", split="test", timesteps=[300, 500, 700], aggregate="vote")
    assert multi["nfe_per_image"] == 12 and 0.0 <= multi["accuracy"] <= 1.0

    check = leakage_check(tmp_path / "pre", tmp_path / "uncond")
    assert check["leak"] is False and 0.5 < check["ratio"] < 1.5
    probe = probe_encoder(tmp_path / "pre")
    assert probe["probs"].shape == (20, 4) and 0.0 <= probe["accuracy"] <= 1.0

    rows = (tmp_path / "tune" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,lr,val_top1,seconds") and len(rows) == 19
    saved = json.loads((tmp_path / "tune" / "config.json").read_text())
    assert saved["method"] == "repcond-tune" and saved["repcond"]["model"]["condition"]["kind"] == "label"
    assert saved["repcond"]["pretrained"] == str(tmp_path / "pre") and saved["transform"]["img_size"] == 12
    with pytest.raises(DiffclsError, match="label-conditioned"):
        evaluate_dc_zero(tmp_path / "pre")


def test_save_load_round_trip(tmp_path, npz_path):
    trainer = RepCondTrainer(config(npz_path, tmp_path / "pre", "repcond-pretrain", epochs=1), progress=False)
    trainer.fit()
    loaded = load_checkpoint(tmp_path / "pre")
    assert loaded.model.kind == "encoder" and loaded.codec.to_config() == {"kind": "identity", "channels": 1}
    z, t = torch.randn(3, 1, 12, 12), torch.tensor([5, 50, 500])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(z, t, z), trainer.model(z, t, z))
    # the library-level pair, without the training folder
    spec = model_spec(trainer.model)
    save_model(trainer.model, tmp_path)
    again = load_model(tmp_path, json.loads(json.dumps(spec)))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), trainer.model.state_dict().values()))
    with pytest.raises(DiffclsError, match="do not fit"):
        load_model(tmp_path, {**spec, "dit": {**spec["dit"], "depth": 3}})
    assert set(build_model(spec).state_dict()) == set(load_weights(tmp_path / WEIGHTS_NAME))


@pytest.mark.parametrize("method", ["repcond-pretrain", "repcond-tune"])
def test_resume_after_interruption_gives_identical_weights(tmp_path, npz_path, monkeypatch, method):
    options = dict(epochs=2, batch_size=16, ema_decay=0.9)
    if method == "repcond-tune":
        pretrain(config(npz_path, tmp_path / "pre", "repcond-pretrain", epochs=1, batch_size=16), progress=False)
        options["pretrained"] = str(tmp_path / "pre")
    RepCondTrainer(config(npz_path, tmp_path / "a", method, **options), progress=False).fit()

    trainer = RepCondTrainer(config(npz_path, tmp_path / "b", method, **options), progress=False)
    original = RepCondTrainer.train_one_epoch

    def crash_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # killed after epoch 1 was checkpointed
        return original(self, epoch)

    monkeypatch.setattr(RepCondTrainer, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(RepCondTrainer, "train_one_epoch", original)
    assert load_training_state(tmp_path / "b" / STATE_NAME)["epoch"] == 1
    RepCondTrainer(config(npz_path, tmp_path / "b", method, **options), progress=False).fit(resume=True)

    a, b = load_weights(tmp_path / "a" / WEIGHTS_NAME), load_weights(tmp_path / "b" / WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows_b) == 3 and [r.split(",")[:4] for r in rows_a] == [r.split(",")[:4] for r in rows_b]
    with pytest.raises(DiffclsError, match="seed was 0"):
        RepCondTrainer(config(npz_path, tmp_path / "b", method, **options, seed=1), progress=False).fit(resume=True)


def test_leakage_check_flags_a_low_loss_only_through_an_r_as_wide_as_z0(tmp_path):
    def folder(name, loss, d_r=None):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(
            "epoch,train_loss,lr,val_top1,seconds,val_loss,val_loss_null\n"
            f"1,0.5,0.001,,1.0,0.4,0.4\n2,0.3,0.001,,1.0,{loss},0.3\n"
        )
        if d_r is not None:  # z0: 1 channel of 16 x 16 = 256 values
            model = {
                "dit": {"in_channels": 1, "input_size": 16},
                "condition": {"kind": "encoder", "encoder": {"d_r": d_r}},
            }
            (tmp_path / name / "config.json").write_text(json.dumps({"repcond": {"model": model}}))
        return tmp_path / name

    unc = folder("unc", 0.2)
    assert leakage_check(folder("unknown", 0.01), unc) == {
        "repcond_loss": 0.01,
        "uncond_loss": 0.2,
        "ratio": 0.05,
        "r_values": None,
        "z0_values": None,
        "bottleneck": None,
        "leak": True,  # width unknown: the ratio alone decides
    }
    wide = leakage_check(folder("wide", 0.01, d_r=256), unc)
    assert (wide["bottleneck"], wide["leak"]) == (1.0, True)
    narrow = leakage_check(folder("narrow", 0.01, d_r=64), unc)
    assert (narrow["r_values"], narrow["z0_values"], narrow["bottleneck"], narrow["leak"]) == (64, 256, 0.25, False)
    assert leakage_check(folder("helps_a_little", 0.15, d_r=256), unc)["leak"] is False
    with pytest.raises(DiffclsError, match="no val_loss"):
        leakage_check(tmp_path, unc)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(method="repcond-tune"), "needs a pretrained folder"),
        (dict(method="ddpm"), "unknown method"),
        (dict(cond_dropout=1.0), "dropout"),
        (dict(d_r=512), "narrow"),
        (dict(model="dit_huge"), "unknown DiT"),
        (dict(r_tokens=2, encoder_patch_size=3), "needs the encoder's patch size 2, not 3"),
        (dict(r_tokens=4), r"--r-tokens must lie in 1..3"),  # a 2x2 patch of one channel holds 4 values
    ],
)
def test_bad_options(tmp_path, npz_path, options, message):
    with pytest.raises(DiffclsError, match=message):
        RepCondTrainer(config(npz_path, tmp_path / "x", **{"method": "repcond-pretrain", **options}), progress=False)


def test_spatial_r_pretrains_tunes_and_classifies(tmp_path, npz_path):
    """--r-tokens: the encoder and DiT share the token grid, tuning starts from class-mean maps, DC Zero runs."""
    pretrain(config(npz_path, tmp_path / "pre", "repcond-pretrain", r_tokens=2, epochs=2), progress=False)
    loaded = load_checkpoint(tmp_path / "pre")
    assert loaded.model.condition.config.r_tokens == 2 and loaded.model.dit.config.d_r == 36 * 2  # 6x6 tokens
    tune(
        config(npz_path, tmp_path / "tune", "repcond-tune", pretrained=str(tmp_path / "pre"), epochs=2), progress=False
    )
    tuned = load_checkpoint(tmp_path / "tune")
    assert tuned.model.condition.embedding.weight.shape == (5, 72)
    r = evaluate_dc_zero(tmp_path / "tune", timesteps=300)
    assert 0.0 <= r["top1"] <= 1.0 and r["nfe_per_image"] == 4


def test_tuning_with_val_every_gives_the_same_weights(tmp_path, npz_path):
    """The comparison benchmark tunes with --val-every to save time: skipping validation must change no weight."""
    pretrain(config(npz_path, tmp_path / "pre", "repcond-pretrain", epochs=1, batch_size=16), progress=False)
    options = dict(epochs=3, batch_size=16, pretrained=str(tmp_path / "pre"), label_init="random")
    for name, every in [("a", 1), ("b", 2)]:
        tune = config(npz_path, tmp_path / name, "repcond-tune", **options, val_every=every)
        RepCondTrainer(tune, progress=False).fit()
    a, b = load_weights(tmp_path / "a" / WEIGHTS_NAME), load_weights(tmp_path / "b" / WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [r.split(",") for r in (tmp_path / "b" / "metrics.csv").read_text().splitlines()[1:]]
    assert [r[3] != "" for r in rows] == [False, True, True]  # val_top1 at epoch 2 (every 2nd) and 3 (the last)

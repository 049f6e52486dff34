"""The papers' protocols at the training level: the validation split, training at a low resolution, the two
scarce-data protocols, named recipes and their augmentations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffcls.cli import build_parser, main
from diffcls.data import load_source, training_splits, validation_split
from diffcls.data.sources import Split
from diffcls.data.transforms import ImageTransform, TransformConfig
from diffcls.errors import DiffclsError
from diffcls.eval.evaluate import evaluate_model
from diffcls.methods import get_method, trainer
from diffcls.train.config import TrainConfig
from diffcls.train.recipes import RECIPES, apply_recipe


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(data="digits", method="standard", model="didirn_small", output=str(tmp_path / "m"), epochs=1)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------------------------- validation


def test_validation_split_is_disjoint_stratified_and_reproducible():
    source = load_source("digits")
    train, val = validation_split(source.train, 0.1)
    again_train, again_val = validation_split(source.train, 0.1)
    n = len(source.train)
    assert len(val) == round(0.1 * n) and len(train) + len(val) == n
    assert np.array_equal(val.images, again_val.images) and np.array_equal(train.labels, again_train.labels)
    # disjoint from each other and from the test split (digits holds no duplicate images)
    keys = {split: {im.tobytes() for im in s.images} for split, s in (("t", train), ("v", val), ("x", source.test))}
    assert not keys["t"] & keys["v"] and not keys["v"] & keys["x"] and not keys["t"] & keys["x"]
    # stratified: each class holds about 10% of its images in validation
    for c in range(10):
        share = (val.labels == c).sum() / (source.train.labels == c).sum()
        assert abs(share - 0.1) < 0.02
    assert validation_split(source.train, 0.0) == (source.train, None)


def test_train_limit_comes_before_the_validation_split():
    labels = np.repeat(np.arange(4), 50)
    split = Split(np.arange(200, dtype=np.uint8).reshape(200, 1, 1, 1), labels)
    pool, val = training_splits(split, train_limit=100, val_split=0.2)
    assert len(pool) == 80 and len(val) == 20 and np.bincount(val.labels).tolist() == [5, 5, 5, 5]
    assert not set(pool.images.ravel()) & set(val.images.ravel())


def test_training_validates_on_held_out_training_images_not_the_test_split(tmp_path):
    run = trainer(config(tmp_path, val_split=0.2), progress=False)
    source = load_source("digits")
    _, val = validation_split(source.train, 0.2)
    assert len(run.val_set) == len(val) and np.array_equal(run.val_set.split.images, val.images)
    assert len(run.train_set) == len(source.train) - len(val)
    on_test = trainer(config(tmp_path / "t", val_split=0.0), progress=False)
    assert on_test.val_set.split is source.test  # --val-split 0: the old behaviour, asked for


def test_eval_reads_the_validation_split_a_checkpoint_held_out(tmp_path, capsys):
    trainer(config(tmp_path, val_split=0.2, img_size=16), progress=False).fit()
    results = tmp_path / "val.json"
    args = ["eval", "--checkpoint", str(tmp_path / "m"), "--data", "digits", "--split", "val"]
    assert main([*args, "--results-file", str(results), "--device", "cpu"]) == 0
    _, val = validation_split(load_source("digits").train, 0.2)
    assert json.loads(results.read_text())["num_samples"] == len(val)
    trainer(config(tmp_path / "old", val_split=0.0, img_size=16), progress=False).fit()
    code = main(["eval", "--checkpoint", str(tmp_path / "old" / "m"), "--data", "digits", "--split", "val"] + [
        "--results-file", str(results), "--device", "cpu"])  # fmt: skip
    assert code == 2 and "held out no validation images" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- low resolution


def test_low_resolution_protocol_feeds_the_network_res_by_res_in_training_and_evaluation(tmp_path):
    from diffcls.methods import load_classifier

    run = trainer(config(tmp_path, img_size=8, epochs=1), progress=False)
    shapes = []
    handle = run.model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[-2:])))
    run.fit()
    handle.remove()
    assert shapes and set(shapes) == {(8, 8)}  # training batches and the per-epoch validation
    model, mconfig = load_classifier(str(tmp_path / "m"), "cpu")
    assert mconfig["transform"]["img_size"] == 8 and mconfig["transform"]["low_res"] is None
    # evaluation rebuilds the transform from config.json: 8×8 digits stay 8×8, larger images are resized to 8
    transform = ImageTransform(TransformConfig.from_dict(mconfig["transform"]))
    assert transform(torch.zeros(1, 8, 8, dtype=torch.uint8)).shape == (3, 8, 8)
    assert transform(torch.zeros(1, 28, 28, dtype=torch.uint8)).shape == (3, 8, 8)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    metrics, _ = evaluate_model(get_method("standard"), model, load_source("digits").test, transform.config)
    assert set(seen) == {(8, 8)} and metrics["num_samples"] == len(load_source("digits").test)


# ------------------------------------------------------------------------------------------------ scarce data


def test_scarce_data_protocols_differ_in_steps_and_learning_rate(tmp_path):
    pool = len(load_source("digits").train) - round(0.1 * len(load_source("digits").train))
    kept = sum(max(1, math.floor(n * 0.1 + 1e-9)) for n in np.bincount(validation_split(
        load_source("digits").train, 0.1)[0].labels))  # fmt: skip
    reference = trainer(config(tmp_path / "a", data_ratio=0.1, ratio_lr=True, batch_size=16), progress=False)
    equal = trainer(config(tmp_path / "b", data_ratio=0.1, equal_steps=True, batch_size=16), progress=False)
    full = trainer(config(tmp_path / "c", batch_size=16), progress=False)
    # the reference: the same epochs over the subset, so fewer steps; equal steps: the subset tiled to the pool
    assert len(reference.train_set) == kept and reference.steps_per_epoch == math.ceil(kept / 16)
    assert len(equal.train_set) == pool and equal.steps_per_epoch == full.steps_per_epoch == math.ceil(pool / 16)
    base = 2e-3 * 16 / 256
    assert reference.optimizer.defaults["lr"] == pytest.approx(base * math.sqrt(10))  # lr × √(1/r)
    assert equal.optimizer.defaults["lr"] == pytest.approx(base)


# ----------------------------------------------------------------------------------------------------- recipes


def test_recipes_fill_flags_that_were_not_given():
    options = apply_recipe("didicm-strong", {"epochs": 3, "lr": 1e-3})
    assert options["epochs"] == 3 and options["lr"] == 1e-3  # given flags win
    assert (options["opt"], options["mixup"], options["cutmix"], options["smoothing"]) == ("lamb", 0.2, 1.0, 0.1)
    assert (options["rand_augment"], options["aug_repeats"], options["recipe"]) == (
        "rand-m7-mstd0.5-inc1",
        3,
        "didicm-strong",
    )
    weak = apply_recipe("didicm-weak", {})
    assert (weak["color_jitter"], weak["warmup_epochs"], weak["weight_decay"], weak.get("mixup")) == (
        0.4,
        5,
        0.01,
        None,
    )
    assert apply_recipe(None, {"lr": 1.0}) == {"lr": 1.0}
    with pytest.raises(DiffclsError, match="unknown recipe 'strong'; choose from didicm-weak, didicm-strong"):
        apply_recipe("strong", {})


def test_a_recipe_makes_a_valid_config_for_both_classifiers():
    for method in ("standard", "didicm"):
        for name in RECIPES:
            options = apply_recipe(name, {"data": "digits", "model": "didirn_small", "output": "x"})
            config = get_method(method).make_config(options)
            config.validate()
            assert config.recipe == name and config.opt == "lamb"


def test_train_help_lists_the_recipes():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    assert "--recipe" in text and "didicm-weak" in text and "didicm-strong" in text and "rand-m7-mstd0.5-inc1" in text


def test_cli_recipe_run_records_it_and_keeps_explicit_flags(tmp_path):
    out = tmp_path / "r"
    args = ["train", "--data", "digits", "--method", "standard", "--model", "didirn_small", "--output", str(out)]
    args += ["--recipe", "didicm-strong", "--epochs", "1", "--batch-size", "32", "--img-size", "16"]
    assert main([*args, "--device", "cpu", "--warmup-epochs", "0"]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["recipe"], train["epochs"], train["batch_size"], train["aug_repeats"]) == ("didicm-strong", 1, 32, 3)
    assert (train["opt"], train["rand_augment"], train["mixup"]) == ("lamb", "rand-m7-mstd0.5-inc1", 0.2)


def test_rand_augment_changes_images_and_bad_strings_are_one_line():
    torch.manual_seed(0)
    image = (torch.arange(16 * 16, dtype=torch.float32).reshape(1, 16, 16) % 255).to(torch.uint8)
    plain = ImageTransform(TransformConfig(img_size=16))(image)
    augmented = ImageTransform(TransformConfig(img_size=16), rand_augment="rand-m9-n3-mstd0.5")
    outs = [augmented(image) for _ in range(6)]
    assert all(o.shape == plain.shape == (3, 16, 16) for o in outs)
    assert sum(not torch.allclose(o, plain) for o in outs) >= 4  # RandAugment rewrites most draws
    with pytest.raises(DiffclsError, match=r"^bad --rand-augment 'rnd-m9' \(timm's syntax: rand-m7-mstd0.5-inc1\)$"):
        ImageTransform(TransformConfig(img_size=16), rand_augment="rnd-m9")


def test_repeated_augmentation_repeats_each_image_in_a_row(tmp_path):
    run = trainer(config(tmp_path, aug_repeats=3, batch_size=12), progress=False)
    order = list(run.train_sampler(0))
    assert len(order) == len(run.train_set)  # an epoch as long as the data set
    assert all(order[i] == order[i + 1] == order[i + 2] for i in range(0, len(order) - 2, 3))
    assert list(run.train_sampler(0)) == order and list(run.train_sampler(1)) != order  # seeded by the epoch
    other_seed = trainer(config(tmp_path / "s", aug_repeats=3, batch_size=12, seed=1), progress=False)
    assert list(other_seed.train_sampler(0)) != order  # and by the seed

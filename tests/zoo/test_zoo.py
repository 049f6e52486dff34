"""The model zoo: shipped entries classify and re-measure as recorded; zoo:NAME in every command that reads a model;
reproduce and verify on a zoo of the test's own; the benchmark starts from entries trained like its models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcls.bench.contenders import DIDICM, DIDICM_LATE1, PLAIN_RESNET, STANDARD_TWIN
from diffcls.bench.grid import PRESETS, Training
from diffcls.bench.runner import _finished_epochs
from diffcls.cli import main
from diffcls.data import load_source
from diffcls.data.datasets import stratified_order
from diffcls.errors import DiffclsError
from diffcls.train.supervised import fill_data_defaults
from diffcls.zoo import PACKAGE_ZOO_DIR, RECORD_NAME, ZOO_DIR_VARIABLE, zoo_entries, zoo_entry
from diffcls.zoo.match import entry_trained_like, install_entry

MNIST5K = ["mnist5k-ddpm", "mnist5k-didicm", "mnist5k-didicm-late1", "mnist5k-plain", "mnist5k-standard"]
FASHION = ["fashion-mnist-didicm", "fashion-mnist-standard"]  # skipped where Fashion-MNIST is not installed
SHIPPED = sorted(MNIST5K + FASHION)
ZOO_BUDGET_BYTES = 25_000_000


def one_line_error(argv, capsys) -> str:
    """The exit status is 2 and stderr one line, for library errors and argparse's (which exit)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("diffcls: error:"), err
    return err


# --------------------------------------------------------------------------------------------- shipped entries


def test_the_zoo_ships_its_entries_within_budget():
    entries = zoo_entries(PACKAGE_ZOO_DIR)
    assert sorted(entries) == SHIPPED
    assert sum(e.size_bytes for e in entries.values()) <= ZOO_BUDGET_BYTES
    for e in entries.values():
        r = e.record
        assert r["recipe"][:2] == ["--data", r["data"]] and "--output" not in r["recipe"]
        assert r["commit"] and len(r["commit"]) == 40 and r["diffcls_version"]
        assert {"val", "test", "test_subset"} <= set(r["metrics"])
        assert r["metrics"]["test_subset"]["images"] == r["subset_images"]
        assert r["metrics"]["test"]["images"] == r["split"]["test_images"] == {"mnist5k": 1000}.get(r["data"], 10000)
        assert r["metrics"]["val"]["images"] == r["split"]["val_images"] > 0
        assert not (e.folder / "training_state.pt").exists()  # weights only: no optimiser state shipped
        assert 0.8 <= r["metrics"]["test"]["top1"] <= 1.0, (e.name, r["metrics"]["test"])  # trained, not chance


def test_zoo_list_prints_every_entry(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        record = zoo_entry(name).record
        assert f"{record['metrics']['test']['top1']:.3f}" in line and record["model"] in line
    assert f"{len(SHIPPED)} models" in out
    assert main(["zoo", "list", "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == SHIPPED


def fashion_mnist_installed() -> bool:
    try:
        load_source("fashion-mnist")
    except DiffclsError:
        return False
    return True


@pytest.mark.parametrize("name", SHIPPED)
def test_recorded_test_metrics_are_re_measured(name, tmp_path, capsys):
    """`diffcls zoo verify` evaluates the entry on its recorded stratified test subset and compares."""
    if name in FASHION and not fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is not installed (make fashion-mnist)")
    code = main(["zoo", "verify", name, "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    recorded = zoo_entry(name).metrics["test_subset"]
    measured = json.loads((tmp_path / f"{name}-test_subset.json").read_text())
    assert measured["num_samples"] == recorded["images"]
    assert abs(measured["top1"] - recorded["top1"]) <= 1 / recorded["images"] + 1e-9
    assert abs(measured["nll"] - recorded["nll"]) <= 0.005


def write_test_pngs(folder: Path, n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n`` images of the stratified test order as PNG files (in data-set order), and their labels."""
    test = load_source("mnist5k").test
    chosen = np.sort(stratified_order(test.labels)[:n])
    folder.mkdir()
    paths = []
    for i in chosen:
        path = folder / f"test{i:04d}.png"
        Image.fromarray(test.images[i][..., 0]).save(path)
        paths.append(str(path))
    return paths, test.labels[chosen]


def test_predict_with_a_zoo_name_classifies_pngs_with_the_recorded_top1(tmp_path, capsys):
    entry = zoo_entry("mnist5k-didicm")
    n = entry.record["subset_images"]
    paths, labels = write_test_pngs(tmp_path / "pngs", n)
    assert main(["predict", "--checkpoint", "zoo:mnist5k-didicm", "--top-k", "1", "--json", *paths]) == 0
    rows = json.loads(capsys.readouterr().out)
    predicted = np.array([row["predictions"][0]["index"] for row in rows])
    top1 = float((predicted == labels).mean())
    assert abs(top1 - entry.metrics["test_subset"]["top1"]) <= 1 / n + 1e-9, top1


def test_unknown_zoo_name_lists_the_known_ones(tmp_path, capsys):
    for argv in (
        ["predict", "--checkpoint", "zoo:mnist5k-nope", "x.png"],
        ["eval", "--checkpoint", "zoo:nope", "--data", "mnist5k", "--results-file", str(tmp_path / "r.json")],
        ["eval", "--pretrained", "zoo:nope", "--data", "mnist5k", "--results-file", str(tmp_path / "r.json")],
        ["zoo", "verify", "nope"],
    ):
        err = one_line_error(argv, capsys)
        assert "unknown zoo model" in err and all(name in err for name in SHIPPED), err
    assert not (tmp_path / "r.json").exists()


def test_zoo_entries_are_never_written(tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in zoo_entry("mnist5k-ddpm").folder.rglob("*")}
    err = one_line_error(
        ["eval", "--checkpoint", "zoo:mnist5k-ddpm", "--data", "mnist5k", "--split", "val", "--limit", "10",
         "--fit-temperature", "--results-file", str(tmp_path / "t.json")],
        capsys,
    )  # fmt: skip
    assert "read-only" in err
    err = one_line_error(["zoo", "reproduce", "mnist5k-plain", "--output", str(PACKAGE_ZOO_DIR / "x")], capsys)
    assert "inside the zoo" in err
    assert {p: p.stat().st_mtime_ns for p in zoo_entry("mnist5k-ddpm").folder.rglob("*")} == before
    assert not (PACKAGE_ZOO_DIR / "x").exists()


@pytest.mark.parametrize("contender", [STANDARD_TWIN, PLAIN_RESNET, DIDICM, DIDICM_LATE1], ids=lambda c: c.key)
def test_the_full_benchmark_starts_from_the_entry_trained_like_its_seed_0_model(contender, tmp_path):
    preset = dataclasses.replace(PRESETS["full"], contenders=PRESETS["full"].contenders + (DIDICM_LATE1,))
    folder = tmp_path / f"{contender.key}-r1-s0"
    config = contender.train_config(preset, Training(), 0, data="mnist5k", output=str(folder), device="cpu")
    fill_data_defaults(config, load_source("mnist5k"))  # as the training records them (input size, augmentation)
    entry = entry_trained_like(dataclasses.asdict(config))
    assert entry is not None and entry.name == f"mnist5k-{contender.key}"
    assert entry_trained_like(dataclasses.asdict(dataclasses.replace(config, val_every=5))) == entry  # same weights
    # another seed, fraction or resolution is not that entry
    for change in ({"seed": 1}, {"data_ratio": 0.05}, {"img_size": 8}, {"data": "fashion-mnist"}):
        assert entry_trained_like(dataclasses.asdict(dataclasses.replace(config, **change))) is None
    install_entry(entry, folder, output=str(folder))
    assert _finished_epochs(folder) >= config.epochs  # the benchmark counts the copied model as trained
    installed = json.loads((folder / "config.json").read_text())
    assert installed["zoo_entry"] == entry.name and installed["train"]["output"] == str(folder)
    assert not (folder / RECORD_NAME).exists()


# --------------------------------------------------------------------------------------- a zoo of the test's own

RECIPE = ["--data", "digits", "--method", "standard", "--model", "didirn_small", "--epochs", "1", "--img-size", "16"]


@pytest.fixture(scope="module")
def own_zoo(tmp_path_factory):
    """A zoo with one entry trained from RECIPE, its test metrics measured by `diffcls eval`, and its path."""
    root = tmp_path_factory.mktemp("zoo")
    trained = root / "trained"
    assert main(["train", *RECIPE, "--seed", "0", "--output", str(trained)]) == 0
    folder = root / "zoo" / "digits-tiny"
    shutil.copytree(trained, folder, ignore=lambda _d, names: [n for n in names if n == "training_state.pt"])
    assert main(["eval", "--checkpoint", str(folder), "--data", "digits", "--limit", "60",
                 "--results-file", str(root / "subset.json")]) == 0  # fmt: skip
    measured = json.loads((root / "subset.json").read_text())
    metrics = {"images": 60, **{k: measured[k] for k in ("top1", "nll", "brier", "ece")}}
    record = {"recipe": [*RECIPE, "--seed", "0"], "data": "digits", "method": "standard", "model": "didirn_small"}
    record |= {"subset_images": 60, "metrics": {"val": metrics, "test": metrics, "test_subset": metrics}}
    (folder / RECORD_NAME).write_text(json.dumps(record))
    return root / "zoo"


def test_reproduce_retrains_the_recipe_to_the_same_weights(own_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ZOO_DIR_VARIABLE, str(own_zoo))
    assert main(["zoo", "reproduce", "digits-tiny", "--output", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    summary = json.loads(next(ln for ln in out.splitlines() if ln.startswith('{"entry"')))
    assert summary["tensors"] > 10 and summary["identical"] == summary["tensors"]
    assert summary["max_abs_difference"] == 0.0
    assert "bit-for-bit equal to zoo:digits-tiny" in out


def test_verify_agrees_with_a_true_record_and_flags_a_false_one(own_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ZOO_DIR_VARIABLE, str(own_zoo))
    assert main(["zoo", "verify", "digits-tiny"]) == 0
    assert "agrees with its record" in capsys.readouterr().out
    # a record whose top-1 is two images off
    tampered = tmp_path / "zoo"
    shutil.copytree(own_zoo, tampered)
    record = json.loads((tampered / "digits-tiny" / RECORD_NAME).read_text())
    record["metrics"]["test_subset"]["top1"] -= 2 / 60
    (tampered / "digits-tiny" / RECORD_NAME).write_text(json.dumps(record))
    monkeypatch.setenv(ZOO_DIR_VARIABLE, str(tampered))
    assert main(["zoo", "verify", "digits-tiny"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "top1" in out


def test_a_damaged_record_is_a_one_line_error(own_zoo, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "zoo"
    shutil.copytree(own_zoo, broken)
    (broken / "digits-tiny" / RECORD_NAME).write_text("{not json")
    monkeypatch.setenv(ZOO_DIR_VARIABLE, str(broken))
    err = one_line_error(["zoo", "list"], capsys)
    assert "digits-tiny" in err and RECORD_NAME in err


# ------------------------------------------------------------------------------------------------- slow suite


@pytest.mark.slow
def test_the_smallest_shipped_entry_reproduces_bit_for_bit(tmp_path, capsys):
    """Retrain the smallest shipped entry from its recipe (minutes on 2 cores) and compare every weight."""
    name = min(SHIPPED, key=lambda n: zoo_entry(n).record["training_seconds"])
    assert main(["zoo", "reproduce", name, "--output", str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(next(ln for ln in out.splitlines() if ln.startswith('{"entry"')))
    assert summary["identical"] == summary["tensors"], summary

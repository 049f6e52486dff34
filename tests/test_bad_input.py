"""Bad input gives one line ``diffcls: error: ...`` naming the offending file or name, exit status 2, no traceback,
and no half-written output. One test per case; docs/reliability.md ("Bad input") lists them with the message the
user sees. The cases already covered by tests/test_cli.py (test_error_cases_are_one_line and
test_eval_under_a_corruption_reads_back) are not repeated here.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load
from torch._utils import ExceptionWrapper

from datafiles import write_cifar_folder, write_image_folder, write_npz
from diffcls.cli import main
from diffcls.data import ImageDataset, datasets, load_source
from diffcls.errors import DiffclsError
from diffcls.methods import trainer
from diffcls.train.config import TrainConfig

# ----------------------------------------------------------------------------------------------------- helpers


def run_error(argv: list[str], capsys) -> str:
    """Run the CLI in-process; assert the one-line error contract and return the line."""
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(err.splitlines()) == 1 and err.startswith("diffcls: error:"), err
    return err


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden temp files included); empty if it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in files_in(folder)}


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def png_bomb(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A tiny PNG whose header claims ``width × height`` 8-bit grayscale pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def train_argv(data: str, output: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        data,
        "--method",
        "standard",
        "--model",
        "didirn_small",
        "--output",
        str(output),
        "--epochs",
        "1",
        "--img-size",
        "16",
        "-b",
        "32",
        *extra,
    ]


def eval_argv(checkpoint: Path, data: str, results: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data", data, "--results-file", str(results), *extra]


def assert_no_results(results: Path) -> None:
    assert not results.exists()
    assert files_in(results.parent) == [], files_in(results.parent)  # no temp file left behind either


def write_arrays(path: Path, **changes) -> Path:
    """The 4-class npz of datafiles.write_npz with some arrays replaced."""
    arrays = dict(np.load(write_npz(path)))
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data4(tmp_path_factory) -> Path:
    """The 4-class 12×12 npz (80 train / 20 test images)."""
    return write_npz(tmp_path_factory.mktemp("data") / "blobs.npz")


STANDARD = ["--method", "standard", "--model", "didirn_small", "--epochs", "1", "--img-size", "16"]


@pytest.fixture(scope="module")
def standard_ckpt(tmp_path_factory, data4) -> Path:
    """A standard didirn_small checkpoint for 4 classes at 16 px, trained 1 epoch (so it has a training_state.pt);
    ``STANDARD`` are its training flags."""
    out = tmp_path_factory.mktemp("ckpt") / "std"
    trainer(
        TrainConfig(
            data=f"npz:{data4}", method="standard", model="didirn_small", output=str(out), epochs=1, img_size=16
        ),
        progress=False,
    ).fit()
    return out


@pytest.fixture(scope="module")
def ddpm_ckpt(tmp_path_factory, data4) -> Path:
    """An untrained (0-epoch) class-conditional unet_tiny (a DDPMPipeline folder) for 4 classes at 16 px."""
    out = tmp_path_factory.mktemp("ckpt") / "ddpm"
    trainer(
        TrainConfig(data=f"npz:{data4}", method="ddpm", model="unet_tiny", output=str(out), epochs=0, img_size=16),
        progress=False,
    ).fit()
    return out


@pytest.fixture
def ckpt_copy(standard_ckpt, tmp_path) -> Path:
    """A copy of the standard checkpoint that a test may damage."""
    return Path(shutil.copytree(standard_ckpt, tmp_path / "ckpt"))


@pytest.fixture
def ddpm_copy(ddpm_ckpt, tmp_path) -> Path:
    """A copy of the ddpm checkpoint that a test may damage."""
    return Path(shutil.copytree(ddpm_ckpt, tmp_path / "ddpm"))


# ------------------------------------------------------------------------------- 1. corrupt or truncated files


def test_truncated_png_in_image_folder(tmp_path, capsys, monkeypatch):
    folder = write_image_folder(tmp_path / "imgs")
    bad = folder / "train" / "dog" / "4.png"  # not the first image: found while training, not while scanning
    truncate(bad)
    out = tmp_path / "run"
    err = run_error(train_argv(f"folder:{folder}", out), capsys)
    assert err == f"diffcls: error: cannot decode image {bad}: image file is truncated"
    assert files_in(out) == []
    # With --workers N the error is raised in a DataLoader worker, and the loader re-raises it in the main process
    # through torch's ExceptionWrapper, with the worker's traceback in the message. It must reach the user as the
    # same one line. (Replayed in-process: a real worker's shutdown after an error costs torch 5 s.)
    dataset = ImageDataset(load_source(f"folder:{folder}").train, lambda x: x.float())
    monkeypatch.setattr(datasets, "get_worker_info", lambda: object())  # as inside a worker
    try:
        dataset[dataset.split.images.index(str(bad))]
    except DiffclsError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")  # what the worker sends back
    else:
        pytest.fail("the truncated image was decoded")
    with pytest.raises(DiffclsError) as e:
        wrapper.reraise()
    assert str(e.value) == f"cannot decode image {bad}: image file is truncated"


def test_truncated_npz(tmp_path, capsys):
    data = write_npz(tmp_path / "blobs.npz")
    truncate(data)
    out = tmp_path / "run"
    err = run_error(train_argv(f"npz:{data}", out), capsys)
    assert "cannot read npz file" in err and str(data) in err
    assert files_in(out) == []


def test_corrupt_cifar10_batch(tmp_path, capsys):
    root = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    truncate(root / "data_batch_3")
    (root / "test_batch").write_bytes(b"\x00garbage, not a pickle" * 10)
    out = tmp_path / "run"
    err = run_error(train_argv(f"cifar10:{root}", out), capsys)
    assert "cannot read CIFAR-10 batch" in err and str(root / "data_batch_3") in err
    assert files_in(out) == []
    (root / "data_batch_3").write_bytes((root / "data_batch_2").read_bytes())  # now the garbage test batch
    err = run_error(train_argv(f"cifar10:{root}", out), capsys)
    assert "cannot read CIFAR-10 batch" in err and str(root / "test_batch") in err


def test_truncated_model_safetensors(ckpt_copy, ddpm_copy, data4, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    for weights, extra in (
        (ckpt_copy / "model.safetensors", []),
        (ddpm_copy / "unet" / "diffusion_pytorch_model.safetensors", ["--schedule", "flat-2"]),
    ):
        truncate(weights, 0.9)  # the header is intact, the tensors are cut short
        err = run_error(
            eval_argv(weights.parents[1] if extra else weights.parent, f"npz:{data4}", results, *extra), capsys
        )
        assert f"cannot read weights {weights}: " in err and "(truncated?)" in err
    assert_no_results(results)


def test_truncated_training_state_on_resume(ckpt_copy, data4, capsys):
    truncate(ckpt_copy / "training_state.pt")
    before = snapshot(ckpt_copy)
    err = run_error(["train", "--data", f"npz:{data4}", *STANDARD, "--output", str(ckpt_copy), "--resume"], capsys)
    assert f"cannot load training state {ckpt_copy / 'training_state.pt'} (truncated or damaged?)" in err
    assert snapshot(ckpt_copy) == before  # nothing rewritten, nothing added


def test_config_json_not_json(ckpt_copy, data4, tmp_path, capsys):
    (ckpt_copy / "config.json").write_text('{"method": "standard", "model": ')
    results = tmp_path / "results" / "r.json"
    err = run_error(eval_argv(ckpt_copy, f"npz:{data4}", results), capsys)
    assert f"{ckpt_copy}/config.json is not valid JSON" in err
    assert_no_results(results)
    (ckpt_copy / "config.json").write_text('{"method": "standard"}')  # JSON, but not a diffcls config
    err = run_error(eval_argv(ckpt_copy, f"npz:{data4}", results), capsys)
    assert f"{ckpt_copy}/config.json is not a diffcls checkpoint config" in err
    assert_no_results(results)


def test_config_json_not_json_on_resume(ckpt_copy, data4, capsys):
    (ckpt_copy / "config.json").write_text('{"method": "standard", "model": ')
    before = snapshot(ckpt_copy)
    err = run_error(["train", "--data", f"npz:{data4}", *STANDARD, "--output", str(ckpt_copy), "--resume"], capsys)
    assert f"{ckpt_copy}/config.json is not valid JSON" in err
    assert snapshot(ckpt_copy) == before


# ------------------------------------------------------------------------------------------------ 2. wrong shapes


def test_npz_images_of_wrong_rank(tmp_path, capsys):
    data = write_arrays(tmp_path / "flat.npz", x_train=np.zeros((80, 144), np.uint8))
    out = tmp_path / "run"
    err = run_error(train_argv(f"npz:{data}", out), capsys)
    assert f"{data} x_train: images must be N×H×W or N×H×W×C" in err and "(80, 144)" in err
    assert files_in(out) == []


def test_npz_images_and_labels_differ_in_length(tmp_path, capsys):
    data = write_arrays(tmp_path / "short.npz", y_train=np.arange(79) % 4)
    out = tmp_path / "run"
    err = run_error(train_argv(f"npz:{data}", out), capsys)
    assert f"{data} y_train: 80 images but 79 labels" in err
    assert files_in(out) == []


# ---------------------------------------------------------------------------------------- 3. labels out of range


def test_npz_negative_labels(tmp_path, capsys):
    y = np.repeat(np.arange(4), 20)
    y[7] = -1
    data = write_arrays(tmp_path / "negative.npz", y_train=y)
    out = tmp_path / "run"
    err = run_error(train_argv(f"npz:{data}", out), capsys)
    assert f"{data} y_train: labels must lie in 0..K-1, found -1" in err
    assert files_in(out) == []


# ----------------------------------------------------------------------------------------- 4. NaN or inf in images


def test_npz_float_images_with_nan_or_inf(tmp_path, capsys):
    x = np.load(write_npz(tmp_path / "blobs.npz"))["x_test"].astype(np.float32)
    x[3, 5, 5] = np.nan
    x[4, 0, 0] = np.inf
    data = write_arrays(tmp_path / "nan.npz", x_test=x)
    out = tmp_path / "run"
    err = run_error(train_argv(f"npz:{data}", out), capsys)
    assert f"{data} x_test: images contain NaN or infinite values" in err
    assert files_in(out) == []


# ----------------------------------------------------------------------------- 5. class count checkpoint vs data


def test_class_count_differs_between_checkpoint_and_data(standard_ckpt, ddpm_ckpt, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    err = run_error(eval_argv(standard_ckpt, "digits", results), capsys)  # 4-class checkpoint, 10-class data
    assert "data digits has 10 classes but the checkpoint was trained on 4" in err
    err = run_error(eval_argv(ddpm_ckpt, "digits", results, "--schedule", "flat-2"), capsys)  # the DC path
    assert "data digits has 10 classes but the model embeds only 4" in err
    assert_no_results(results)


# -------------------------------------------------------------------------------------------------- 6. unknown names


def test_unknown_noise_predictor(data4, tmp_path, capsys):
    out = tmp_path / "run"
    err = run_error(
        [
            "train",
            "--data",
            f"npz:{data4}",
            "--method",
            "ddpm",
            "--model",
            "unet_huge",
            "--output",
            str(out),
            "--img-size",
            "16",
        ],
        capsys,
    )
    assert "unknown noise predictor 'unet_huge'" in err and "unet_tiny" in err
    assert files_in(out) == []


def test_unknown_data_spec_kind(tmp_path, capsys):
    out = tmp_path / "run"
    err = run_error(train_argv("hdf5:/data/train.h5", out), capsys)
    assert "unknown data spec 'hdf5:/data/train.h5'" in err and "npz:PATH" in err
    assert files_in(out) == []


def test_unknown_schedule_preset(ddpm_ckpt, data4, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    err = run_error(eval_argv(ddpm_ckpt, f"npz:{data4}", results, "--schedule", "cifar100"), capsys)
    assert "unknown schedule 'cifar100'" in err and "flat-N" in err
    assert_no_results(results)


def test_unknown_sampler(standard_ckpt, data4, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    code = main(eval_argv(standard_ckpt, f"npz:{data4}", results, "--sampler", "ddim"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and not results.exists()
    assert "unknown --sampler 'ddim'; choose from cp, cl, onepass" in err
    assert len(err.splitlines()) == 1 and err.startswith("diffcls: error:"), err


# ------------------------------------------------------------------------------------ 7. a checkpoint of another method


def test_standard_checkpoint_given_to_the_diffusion_classifier(standard_ckpt, data4, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    err = run_error(eval_argv(standard_ckpt, f"npz:{data4}", results, "--method", "diffusion-classifier"), capsys)
    assert (
        f"{standard_ckpt} holds a 'standard' model; the Diffusion Classifier needs one trained with "
        "--method ddpm" in err
    )
    assert_no_results(results)


def test_ddpm_checkpoint_given_to_predict_with_a_bad_schedule(ddpm_ckpt, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(image)
    err = run_error(["predict", "--checkpoint", str(ddpm_ckpt), "--schedule", "flat-x", str(image)], capsys)
    assert "unknown schedule 'flat-x'" in err
    err = run_error(["predict", "--checkpoint", str(ddpm_ckpt), "--schedule", "flat-4", "--n-samples", "2",
                     str(image)], capsys)  # fmt: skip
    assert "give either --schedule or --n-samples/--to-keep, not both" in err


# ------------------------------------------------------------------------- 8. a pickle where safetensors is expected


def test_pickle_named_model_safetensors(ckpt_copy, ddpm_copy, data4, tmp_path, capsys):
    results = tmp_path / "results" / "r.json"
    for weights, extra in (
        (ckpt_copy / "model.safetensors", []),
        (ddpm_copy / "unet" / "diffusion_pytorch_model.safetensors", ["--schedule", "flat-2"]),
    ):
        tensors = load(weights.read_bytes())  # in memory: load_file would map the file being overwritten
        torch.save(tensors, weights)  # the same tensors, pickled by torch.save
        err = run_error(
            eval_argv(weights.parents[1] if extra else weights.parent, f"npz:{data4}", results, *extra), capsys
        )
        assert f"cannot read weights {weights}: " in err and "pickled weights are never loaded" in err
    assert_no_results(results)


# ------------------------------------------------------------------------------------------ 9. decompression bombs


def test_decompression_bomb_in_image_folder(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "imgs")
    bomb = png_bomb(folder / "train" / "eel" / "8.png")  # found while training its first batch
    out = tmp_path / "run"
    err = run_error(train_argv(f"folder:{folder}", out), capsys)
    assert "cannot decode image" in err and str(bomb) in err and "decompression bomb" in err
    assert files_in(out) == []


def test_decompression_bomb_given_to_predict(standard_ckpt, tmp_path, capsys):
    bomb = png_bomb(tmp_path / "bomb.png", 10_000, 10_000)  # 100 MP: PIL would only warn; refused all the same
    err = run_error(["predict", "--checkpoint", str(standard_ckpt), str(bomb)], capsys)
    assert "cannot decode image" in err and str(bomb) in err and "decompression bomb" in err


def test_calibrate_without_validation_images_or_on_the_diffusion_classifier(tmp_path, npz_path, capsys):
    """--calibrate needs the validation images a checkpoint held out, and belongs to classifiers."""
    run = tmp_path / "no-val"
    train = ["train", "--data", f"npz:{npz_path}", "--method", "standard", "--model", "didirn_small"]
    assert main([*train, "--epochs", "1", "--img-size", "16", "--val-split", "0", "--output", str(run)]) == 0
    capsys.readouterr()
    results = tmp_path / "r.json"
    evaluation = ["eval", "--checkpoint", str(run), "--data", f"npz:{npz_path}", "--results-file", str(results)]
    err = run_error([*evaluation, "--calibrate"], capsys)
    assert "--calibrate fits a temperature on the validation images" in err and "--val-split 0" in err
    err = run_error([*evaluation, "--calibrate", "--method", "diffusion-classifier"], capsys)
    assert "--calibrate applies to classifiers" in err and "--fit-temperature" in err
    assert not results.exists()

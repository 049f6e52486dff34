"""Each data spec, read from files the tests write, and its bad-input errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from datafiles import write_cifar_folder, write_image_folder
from diffcls.data import (
    DATA_KINDS,
    DataKind,
    DataSource,
    Split,
    data_spec_help,
    default_augment,
    load_source,
    read_image_file,
    register_data_kind,
)
from diffcls.errors import DiffclsError


def test_mnist5k_is_a_fixed_stratified_4000_1000_split():
    s = load_source("mnist5k")
    assert s.train.images.shape == (4000, 28, 28, 1) and s.test.images.shape == (1000, 28, 28, 1)
    assert s.train.images.dtype == np.uint8 and s.num_classes == 10
    assert np.bincount(s.test.labels).tolist() == [100] * 10
    again = load_source("mnist5k")
    assert np.array_equal(s.test.images, again.test.images)
    # Strokes are real digits: bright pixels exist and the background is dark.
    assert s.train.images.max() == 255 and np.median(s.train.images) == 0


def test_digits_spec():
    s = load_source("digits")
    assert len(s.train) + len(s.test) == 1797 and s.native_size == (8, 8)
    assert s.train.images.max() == 255 and s.num_classes == 10


def test_npz_spec_accepts_nhw_and_nhwc(npz_path, tmp_path):
    s = load_source(f"npz:{npz_path}")
    assert s.train.images.shape == (80, 12, 12, 1) and s.num_classes == 4 and len(s.test) == 20
    rgb = tmp_path / "rgb.npz"
    x = np.zeros((6, 10, 10, 3), np.uint8)
    np.savez(rgb, x_train=x, y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=x[:3], y_test=np.array([0, 1, 2]))
    assert load_source(f"npz:{rgb}").channels == 3


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 8, 8))), "lacks keys"),
        (
            dict(
                x_train=np.zeros((4, 8, 8)),
                y_train=np.array([0, 1, 0]),
                x_test=np.zeros((2, 8, 8)),
                y_test=np.array([0, 1]),
            ),
            "4 images but 3 labels",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8)),
                y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 8, 8)),
                y_test=np.array([0, 5]),
            ),
            "labels must lie in 0..1",
        ),
        (
            dict(
                x_train=np.zeros((4, 8, 8)),
                y_train=np.array([0, -1, 0, 1]),
                x_test=np.zeros((2, 8, 8)),
                y_test=np.array([0, 1]),
            ),
            "labels must lie in 0..K-1",
        ),
        (
            dict(
                x_train=np.full((4, 8, 8), np.nan),
                y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 8, 8)),
                y_test=np.array([0, 1]),
            ),
            "NaN",
        ),
        (
            dict(
                x_train=np.zeros((4, 8)),
                y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 8, 8)),
                y_test=np.array([0, 1]),
            ),
            "must be N×H×W",
        ),
    ],
)
def test_npz_bad_input(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DiffclsError, match=message):
        load_source(f"npz:{path}")


def test_npz_that_is_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(DiffclsError, match="cannot read npz"):
        load_source(f"npz:{path}")


def test_folder_spec_reads_imagefolder_layout(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    s = load_source(f"folder:{root}")
    assert s.class_names == ["cat", "dog", "eel"] and len(s.train) == 9 and not s.train.in_memory
    assert read_image_file(s.train.images[0]).shape == (16, 16, 3)


def test_folder_with_undecodable_image(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    bad = root / "train" / "cat" / "0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DiffclsError, match="cannot decode image"):
        read_image_file(str(bad))


def test_folder_missing_val(tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DiffclsError, match="val/"):
        load_source(f"folder:{tmp_path / 'd'}")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import diffcls.data.sources as sources

    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(DiffclsError, match="exceeds|cannot decode"):
        read_image_file(str(path))


def test_cifar10_spec(tmp_path):
    root = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    s = load_source(f"cifar10:{root}")
    assert s.train.images.shape == (30, 32, 32, 3) and len(s.test) == 6
    assert s.class_names[0] == "airplane" and s.num_classes == 10


def test_cifar10_refuses_code_in_pickles(tmp_path):
    root = write_cifar_folder(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(DiffclsError, match="disallowed"):
        load_source(f"cifar10:{root}")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("imagenet", "unknown data spec"),
        ("npz:", "needs a path"),
        ("npz:/no/such/file.npz", "does not exist"),
        ("folder:/no/such/dir", "does not exist"),
        ("mnist5k:foo", "takes no path"),
        ("cifar10:/tmp", "missing"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(DiffclsError, match=message):
        load_source(spec)


# ----------------------------------------------------------------------------------------------- the kind registry


def _toy_source(path: str) -> DataSource:
    """``toy:N``: N train and N test 4×4 RGB images in memory, image i filled with i, labels alternating 0, 1."""
    n = int(path)
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3)).copy()
    labels = np.arange(n, dtype=np.int64) % 2
    return DataSource(f"toy:{n}", Split(images, labels), Split(images, labels), ["even", "odd"], (4, 4), 3)


@pytest.fixture
def toy_kind():
    """A ``toy`` kind registered for one test, and removed again after it."""
    kind = register_data_kind(
        DataKind("toy", _toy_source, takes_path=True, default_augment="none", help="in-memory toy images")
    )
    yield kind
    del DATA_KINDS["toy"]


def test_a_registered_kind_loads_and_has_its_own_augmentation(toy_kind):
    s = load_source("toy:6")
    assert s.name == "toy:6" and s.train.images.shape == (6, 4, 4, 3) and s.num_classes == 2
    assert s.train.images[5].max() == 5 and s.test.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert default_augment("toy:6") == "none"
    assert "toy:PATH (in-memory toy images)" in data_spec_help()
    with pytest.raises(DiffclsError, match="needs a path"):
        load_source("toy")
    with pytest.raises(ValueError, match="already registered"):
        register_data_kind(toy_kind)


def test_a_kind_registered_in_a_test_is_gone_afterwards():
    assert "toy" not in DATA_KINDS
    with pytest.raises(
        DiffclsError,
        match=r"expected mnist5k, digits, npz:PATH, folder:PATH, cifar10:PATH, gaussmix\[:OPTIONS\], idx:PATH or "
        r"fashion-mnist$",
    ):
        load_source("toy:6")


def test_data_spec_help_lists_every_kind():
    text = data_spec_help()
    assert all(f"{kind.usage} ({kind.help})" in text for kind in DATA_KINDS.values())
    assert text == (
        "data spec: mnist5k (bundled MNIST, 4,000/1,000), digits (scikit-learn 8×8), npz:PATH (x_train, "
        "y_train, x_test, y_test), folder:PATH (train/ and val/ with a folder per class), "
        "cifar10:PATH (the cifar-10-batches-py folder), gaussmix[:OPTIONS] (generated class templates + Gaussian "
        "noise with an exact Bayes posterior; options after a colon, e.g. "
        "gaussmix:classes=10,noise=0.8,size=16,train=5000,test=1000,seed=0), idx:PATH (a folder of the four "
        "MNIST-format IDX files, gzipped or not), fashion-mnist (Fashion-MNIST 60,000/10,000 from Debian's "
        "dataset-fashion-mnist)"
    )


def test_default_augment_per_kind():
    specs = ["mnist5k", "digits", "npz:x.npz", "folder:/data", "cifar10:/data", "gaussmix:noise=1", "hdf5:/data"]
    assert [default_augment(s) for s in specs] == ["crop", "crop", "crop", "rrc-flip", "crop-flip", "none", "crop"]


def test_unknown_spec_error_lists_the_kinds():
    with pytest.raises(DiffclsError) as info:
        load_source("hdf5:/data/train.h5")
    assert str(info.value) == (
        "unknown data spec 'hdf5:/data/train.h5': expected mnist5k, digits, npz:PATH, folder:PATH, cifar10:PATH, "
        "gaussmix[:OPTIONS], idx:PATH or fashion-mnist"
    )

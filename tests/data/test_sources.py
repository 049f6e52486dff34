"""Each data spec, read from files the tests write, and its bad-input errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from datafiles import write_cifar_folder, write_image_folder
from diffcls.data import load_source, read_image_file
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


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 8, 8))), "lacks keys"),
    (dict(x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 0]), x_test=np.zeros((2, 8, 8)),
          y_test=np.array([0, 1])), "4 images but 3 labels"),
    (dict(x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 8, 8)),
          y_test=np.array([0, 5])), "labels must lie in 0..1"),
    (dict(x_train=np.zeros((4, 8, 8)), y_train=np.array([0, -1, 0, 1]), x_test=np.zeros((2, 8, 8)),
          y_test=np.array([0, 1])), "labels must lie in 0..K-1"),
    (dict(x_train=np.full((4, 8, 8), np.nan), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 8, 8)),
          y_test=np.array([0, 1])), "NaN"),
    (dict(x_train=np.zeros((4, 8)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 8, 8)),
          y_test=np.array([0, 1])), "must be N×H×W"),
])
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


@pytest.mark.parametrize("spec, message", [
    ("imagenet", "unknown data spec"), ("npz:", "needs a path"), ("npz:/no/such/file.npz", "does not exist"),
    ("folder:/no/such/dir", "does not exist"), ("mnist5k:foo", "takes no path"), ("cifar10:/tmp", "missing"),
])
def test_bad_specs(spec, message):
    with pytest.raises(DiffclsError, match=message):
        load_source(spec)

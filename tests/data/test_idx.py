"""The idx:DIR and fashion-mnist specs, read from IDX files the tests write, and their bad-input errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from diffcls.data import DATA_KINDS, data_spec_help, default_augment, idx, load_source
from diffcls.data.idx import FASHION_MNIST_CLASSES, IDX_FILES, load_fashion_mnist, load_idx_folder, read_idx
from diffcls.errors import DiffclsError

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = IDX_FILES


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """An IDX file's bytes: magic 0x0000, type, D; D big-endian uint32 sizes; the data in C order."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: Path, data: np.ndarray | bytes, gz: bool = False) -> Path:
    """Write an array (or ready-made bytes) as an IDX file, gzipped to ``path.gz`` when ``gz``."""
    raw = data if isinstance(data, bytes) else idx_bytes(data)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def toy_arrays(n_train: int = 12, n_test: int = 5, size: tuple[int, int] = (6, 5), classes: int = 3, seed: int = 0):
    """Random uint8 images ``[N, H, W]`` and labels ``[N]`` (0..classes-1) for both splits, by IDX file name."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for images, labels, n in ((TRAIN_IMAGES, TRAIN_LABELS, n_train), (TEST_IMAGES, TEST_LABELS, n_test)):
        arrays[images] = rng.integers(0, 256, (n, *size), dtype=np.uint8)
        arrays[labels] = (np.arange(n) % classes).astype(np.uint8)
    return arrays


def write_folder(root: Path, gz: bool | dict[str, bool] = False, **overrides) -> dict[str, np.ndarray]:
    """The four IDX files of ``toy_arrays`` in ``root``; ``overrides`` replaces a file's array or bytes by the name
    with ``-`` as ``_``. Returns what was written."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = toy_arrays()
    for name in IDX_FILES:
        arrays[name] = overrides.get(name.replace("-", "_"), arrays[name])
        write_idx(root / name, arrays[name], gz=gz[name] if isinstance(gz, dict) else gz)
    return arrays


def one_line_error(fn, *args) -> str:
    with pytest.raises(DiffclsError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (7, 4, 3), dtype=np.uint8)
    labels = np.array([0, 9, 255, 3], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / "images", images, gz=gz))
    got_labels = read_idx(write_idx(tmp_path / "labels", labels, gz=gz))
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 4, 3)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # writable: transforms may work in place


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_folder_round_trip(tmp_path, gz):
    written = write_folder(tmp_path, gz=gz)
    s = load_idx_folder(tmp_path)
    assert s.name == f"idx:{tmp_path}" and s.class_names == ["0", "1", "2"] and s.num_classes == 3
    assert s.native_size == (6, 5) and s.channels == 1 and s.default_img_size == 32
    assert s.train.images.shape == (12, 6, 5, 1) and s.test.images.shape == (5, 6, 5, 1)
    assert s.train.images.dtype == np.uint8 and s.train.labels.dtype == np.int64
    np.testing.assert_array_equal(s.train.images[..., 0], written[TRAIN_IMAGES])
    np.testing.assert_array_equal(s.test.images[..., 0], written[TEST_IMAGES])
    np.testing.assert_array_equal(s.train.labels, written[TRAIN_LABELS])
    np.testing.assert_array_equal(s.test.labels, written[TEST_LABELS])


def test_idx_spec_loads_through_the_registry(tmp_path):
    write_folder(tmp_path, gz=True)
    s = load_source(f"idx:{tmp_path}")
    assert s.name == f"idx:{tmp_path}" and len(s.train) == 12 and len(s.test) == 5
    assert default_augment(f"idx:{tmp_path}") == "crop" and default_augment("fashion-mnist") == "crop"


def test_kinds_are_registered_after_the_built_in_ones():
    assert list(DATA_KINDS)[-2:] == ["idx", "fashion-mnist"]
    assert DATA_KINDS["idx"].takes_path and not DATA_KINDS["fashion-mnist"].takes_path
    text = data_spec_help()
    assert "idx:PATH (a folder of the four MNIST-format IDX files, gzipped or not)" in text
    assert text.endswith("fashion-mnist (Fashion-MNIST 60,000/10,000 from Debian's dataset-fashion-mnist)")


def test_mixed_raw_and_gzipped_files(tmp_path):
    gz = {TRAIN_IMAGES: True, TRAIN_LABELS: False, TEST_IMAGES: False, TEST_LABELS: True}
    written = write_folder(tmp_path, gz=gz)
    s = load_idx_folder(tmp_path)
    np.testing.assert_array_equal(s.train.images[..., 0], written[TRAIN_IMAGES])
    np.testing.assert_array_equal(s.test.labels, written[TEST_LABELS])


def test_raw_file_is_preferred_over_its_gzipped_twin(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / TEST_LABELS, np.zeros(5, dtype=np.uint8), gz=True)  # would give labels all 0
    assert load_idx_folder(tmp_path).test.labels.tolist() == [0, 1, 2, 0, 1]


def test_given_class_names_may_name_classes_the_labels_lack(tmp_path):
    write_folder(tmp_path)
    s = load_idx_folder(tmp_path, name="toy", class_names=["a", "b", "c", "d"])
    assert s.name == "toy" and s.class_names == ["a", "b", "c", "d"]


# ---------------------------------------------------------------------------------------------------------- errors


def test_missing_files_are_listed(tmp_path):
    write_folder(tmp_path)
    (tmp_path / TRAIN_LABELS).unlink()
    (tmp_path / TEST_IMAGES).unlink()
    message = one_line_error(load_idx_folder, tmp_path)
    assert message.startswith(f"{tmp_path} lacks {TRAIN_LABELS}, {TEST_IMAGES}: ")
    assert "must hold the four MNIST-format files" in message and "gzipped (.gz) or not" in message


def test_missing_or_non_folder_path(tmp_path):
    assert "does not exist" in one_line_error(load_source, f"idx:{tmp_path / 'nope'}")
    assert "is not a folder" in one_line_error(load_idx_folder, write_idx(tmp_path / "f", np.zeros(3, np.uint8)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x08\x03\x00\x00" + bytes(12), "not an IDX file (magic number 0x08030000"),
        (idx_bytes(np.zeros((2, 2, 2), np.uint8), type_byte=0x0D), "IDX data type 0x0d (float32) is not supported"),
        (b"\x00\x00", "truncated IDX file (2 bytes"),
        (idx_bytes(np.zeros((2, 2, 2), np.uint8))[:14], "truncated IDX file (its header needs 16 bytes"),
        (idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-1], "truncated IDX file (its header says 3×4×4 = 48 bytes"),
        (idx_bytes(np.zeros((3, 4, 4), np.uint8)) + b"\x00\x00", "2 trailing bytes after the data"),
    ],
    ids=["bad-magic", "float32", "no-magic", "short-header", "short-data", "trailing"],
)
def test_bad_idx_files_name_the_file(tmp_path, data, expected):
    write_folder(tmp_path, train_images_idx3_ubyte=data)
    message = one_line_error(load_idx_folder, tmp_path)
    assert message.startswith(f"{tmp_path / TRAIN_IMAGES}: ") and expected in message


def test_a_header_claiming_huge_sizes_is_refused_without_allocating(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    assert "truncated IDX file" in one_line_error(read_idx, write_idx(tmp_path / "huge", header + bytes(10)))


@pytest.mark.parametrize(
    "damage",
    [lambda z: z[: len(z) // 2], lambda z: b"PK" + z[2:], lambda z: z[:-8] + bytes(8)],
    ids=["cut-off", "not-gzip", "bad-crc"],
)
def test_damaged_gzip_stream(tmp_path, damage):
    write_folder(tmp_path, gz=True)
    path = tmp_path / f"{TEST_LABELS}.gz"
    path.write_bytes(damage(path.read_bytes()))
    assert one_line_error(load_idx_folder, tmp_path).startswith(f"{path}: damaged gzip stream: ")


def test_wrong_dimension_counts(tmp_path):
    write_folder(tmp_path, train_images_idx3_ubyte=np.zeros((12, 30), np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TRAIN_IMAGES}: images must have 3 dimensions (N×H×W), the file has 2"
    write_folder(tmp_path, t10k_labels_idx1_ubyte=np.zeros((5, 1), np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TEST_LABELS}: labels must have 1 dimension (N), the file has 2"


def test_image_and_label_counts_must_match(tmp_path):
    write_folder(tmp_path, t10k_labels_idx1_ubyte=np.zeros(4, np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TEST_IMAGES} holds 5 images but {tmp_path / TEST_LABELS} holds 4 labels"


def test_train_and_test_image_sizes_must_match(tmp_path):
    write_folder(tmp_path, t10k_images_idx3_ubyte=np.zeros((5, 6, 6), np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TRAIN_IMAGES} holds 6×5 images but {tmp_path / TEST_IMAGES} holds 6×6 images"


def test_labels_need_two_classes_and_test_labels_known_classes(tmp_path):
    write_folder(tmp_path, train_labels_idx1_ubyte=np.full(12, 4, np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TRAIN_LABELS}: need at least 2 classes, the labels hold only class 4"
    write_folder(tmp_path, t10k_labels_idx1_ubyte=np.array([0, 1, 2, 3, 0], np.uint8))
    message = one_line_error(load_idx_folder, tmp_path)
    assert message == f"{tmp_path / TEST_LABELS}: labels must lie in 0..2, found 3"


def test_empty_split_is_refused(tmp_path):
    write_folder(
        tmp_path, t10k_images_idx3_ubyte=np.zeros((0, 6, 5), np.uint8), t10k_labels_idx1_ubyte=np.zeros(0, np.uint8)
    )
    assert one_line_error(load_idx_folder, tmp_path).startswith(f"{tmp_path / TEST_IMAGES}: holds no image data")


# --------------------------------------------------------------------------------------------------- fashion-mnist


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    message = one_line_error(load_source, "fashion-mnist")
    assert message.startswith(f"fashion-mnist: {tmp_path / 'absent'} not found; ")
    assert "apt-get install dataset-fashion-mnist" in message and "make fashion-mnist" in message
    assert "idx:DIR" in message


def test_fashion_mnist_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    write_folder(tmp_path)
    (tmp_path / TRAIN_IMAGES).unlink()
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", str(tmp_path))
    message = one_line_error(load_fashion_mnist)
    assert message.startswith(f"fashion-mnist: {tmp_path} lacks {TRAIN_IMAGES}; ")
    assert "apt-get install dataset-fashion-mnist" in message


def test_fashion_mnist_on_a_folder_of_the_four_files(tmp_path, monkeypatch):
    written = write_folder(tmp_path, gz=True)
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", str(tmp_path))
    s = load_source("fashion-mnist")
    assert s.name == "fashion-mnist" and s.class_names == list(FASHION_MNIST_CLASSES) and s.num_classes == 10
    assert s.class_names[0] == "T-shirt/top" and s.class_names[-1] == "Ankle boot"
    np.testing.assert_array_equal(s.train.images[..., 0], written[TRAIN_IMAGES])
    assert load_source("fashion-mnist") is s  # cached: a benchmark loads it many times


def test_fashion_mnist_labels_beyond_ten_classes_are_refused(tmp_path, monkeypatch):
    write_folder(tmp_path, train_labels_idx1_ubyte=(np.arange(12) % 11).astype(np.uint8))
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", str(tmp_path))
    assert one_line_error(load_fashion_mnist) == f"{tmp_path / TRAIN_LABELS}: labels must lie in 0..9, found 10"


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist():
    s = load_fashion_mnist()
    assert len(s.train) == 60_000 and len(s.test) == 10_000
    assert s.train.images.shape[1:] == (28, 28, 1) and s.native_size == (28, 28)
    assert np.bincount(s.test.labels).tolist() == [1000] * 10

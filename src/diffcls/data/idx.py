"""MNIST-format IDX files: the ``idx:DIR`` and ``fashion-mnist`` data specs.

MNIST, Fashion-MNIST and KMNIST ship as four IDX files, each raw or gzipped (``.gz``)::

    train-images-idx3-ubyte   uint8[60000, 28, 28]
    train-labels-idx1-ubyte   uint8[60000]
    t10k-images-idx3-ubyte    uint8[10000, 28, 28]
    t10k-labels-idx1-ubyte    uint8[10000]

An IDX file is big-endian: a 4-byte magic number (two zero bytes, a type byte, the number of dimensions D), then D
uint32 sizes, then the data in C order. Type 0x08 is uint8; the other types (int8, int16, int32, float32, float64)
hold no image data set in use and are refused. The sizes are checked against the data length before anything is
allocated, so a damaged header cannot ask for gigabytes.

``fashion-mnist`` reads the folder where Debian's ``dataset-fashion-mnist`` package installs the gzipped files
(:data:`FASHION_MNIST_DIR`); ``make fashion-mnist`` installs it.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from diffcls.data.sources import DataKind, DataSource, Split, register_data_kind
from diffcls.errors import DiffclsError, first_line

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs the files
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one uint8 IDX file, raw or gzipped (by its ``.gz`` suffix), as a writable ``uint8`` array of the shape
    its header gives (``[N, H, W]`` for images, ``[N]`` for labels). Bad files raise a one-line DiffclsError."""
    data = _read_bytes(Path(path))
    if len(data) < 4:
        raise DiffclsError(f"{path}: truncated IDX file ({len(data)} bytes, shorter than the 4-byte magic number)")
    if data[0] != 0 or data[1] != 0:
        raise DiffclsError(f"{path}: not an IDX file (magic number 0x{data[:4].hex()} does not start with 0x0000)")
    if data[2] != 0x08:
        kind = IDX_TYPES.get(data[2], "unknown")
        raise DiffclsError(f"{path}: IDX data type 0x{data[2]:02x} ({kind}) is not supported; only uint8 (0x08) is")
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise DiffclsError(f"{path}: truncated IDX file (its header needs {header} bytes, the file has {len(data)})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size, found = math.prod(shape), len(data) - header  # Python ints: 2^32-sized dimensions must not overflow
    if found != size:
        what = "truncated IDX file" if found < size else f"{found - size} trailing bytes after the data"
        dims = "×".join(map(str, shape))
        raise DiffclsError(f"{path}: {what} (its header says {dims} = {size} bytes of data, the file holds {found})")
    # A copy: np.frombuffer over bytes is read-only, and callers may augment images in place.
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(shape).copy()


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DiffclsError(f"cannot read {path}: {first_line(e)}") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, zlib.error, EOFError) as e:  # BadGzipFile is an OSError; a cut-off stream raises EOFError
        raise DiffclsError(f"{path}: damaged gzip stream: {first_line(e)}") from None


def find_idx_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Each of the four :data:`IDX_FILES` names found in ``root`` → its file (raw preferred over ``.gz``), and the
    names found in neither form."""
    found, missing = {}, []
    for name in IDX_FILES:
        candidates = [root / name, root / f"{name}.gz"]
        file = next((p for p in candidates if p.is_file()), None)
        if file is None:
            missing.append(name)
        else:
            found[name] = file
    return found, missing


def _read_split(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images ``uint8[N, H, W, 1]`` and labels ``int64[N]``, checked against each other."""
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3:
        raise DiffclsError(f"{images_file}: images must have 3 dimensions (N×H×W), the file has {images.ndim}")
    if labels.ndim != 1:
        raise DiffclsError(f"{labels_file}: labels must have 1 dimension (N), the file has {labels.ndim}")
    if len(images) == 0 or 0 in images.shape[1:]:
        raise DiffclsError(f"{images_file}: holds no image data (shape {'×'.join(map(str, images.shape))})")
    if len(images) != len(labels):
        raise DiffclsError(f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels")
    return images[..., None], labels.astype(np.int64)


def load_idx_folder(path: str | Path, name: str | None = None, class_names: list[str] | None = None) -> DataSource:
    """The ``idx:DIR`` spec: a folder of the four MNIST-format IDX files, each raw or gzipped.

    Images are ``uint8[N, H, W, 1]``, labels ``int64[N]``. ``class_names`` defaults to ``"0".."K-1"`` with K the
    largest training label + 1; when given, labels must lie below its length. ``name`` defaults to ``idx:PATH``.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DiffclsError(f"idx folder {path} {'is not a folder' if root.exists() else 'does not exist'}")
    files, missing = find_idx_files(root)
    if missing:
        raise DiffclsError(
            f"{path} lacks {', '.join(missing)}: an idx folder must hold the four MNIST-format files "
            f"{', '.join(IDX_FILES)}, gzipped (.gz) or not"
        )
    tr_images, tr_labels, te_images, te_labels = (files[n] for n in IDX_FILES)
    x_tr, y_tr = _read_split(tr_images, tr_labels)
    x_te, y_te = _read_split(te_images, te_labels)
    if x_tr.shape[1:] != x_te.shape[1:]:
        size_tr, size_te = ("×".join(map(str, x.shape[1:3])) for x in (x_tr, x_te))
        raise DiffclsError(f"{tr_images} holds {size_tr} images but {te_images} holds {size_te} images")
    present = np.unique(y_tr)
    if len(present) < 2:
        raise DiffclsError(f"{tr_labels}: need at least 2 classes, the labels hold only class {int(present[0])}")
    num_classes = len(class_names) if class_names is not None else int(present[-1]) + 1
    for labels, file in ((y_tr, tr_labels), (y_te, te_labels)):
        if labels.max() >= num_classes:
            raise DiffclsError(f"{file}: labels must lie in 0..{num_classes - 1}, found {labels.max()}")
    h, w = x_tr.shape[1:3]
    return DataSource(
        name=name or f"idx:{path}",
        train=Split(x_tr, y_tr),
        test=Split(x_te, y_te),
        class_names=list(class_names) if class_names is not None else [str(i) for i in range(num_classes)],
        native_size=(h, w),
        channels=1,
        default_img_size=max(32, h),  # 32 for the 28×28 sets, as mnist5k; larger IDX images keep their size
    )


def load_fashion_mnist() -> DataSource:
    """The ``fashion-mnist`` spec: 60,000/10,000 28×28 images in 10 classes, from :data:`FASHION_MNIST_DIR`."""
    root = Path(FASHION_MNIST_DIR)
    if not root.is_dir():
        raise DiffclsError(_fashion_mnist_hint(f"{root} not found"))
    _, missing = find_idx_files(root)
    if missing:
        raise DiffclsError(_fashion_mnist_hint(f"{root} lacks {', '.join(missing)}"))
    return _load_fashion_mnist_cached(str(root))


@functools.lru_cache(maxsize=1)  # a benchmark loads it many times; keyed by folder so tests may repoint it
def _load_fashion_mnist_cached(root: str) -> DataSource:
    return load_idx_folder(root, name="fashion-mnist", class_names=list(FASHION_MNIST_CLASSES))


def _fashion_mnist_hint(problem: str) -> str:
    return (
        f"fashion-mnist: {problem}; install it with `apt-get install dataset-fashion-mnist` (or `make fashion-mnist`), "
        "or point --data idx:DIR at a folder holding the four MNIST-format files"
    )


# Digits must not be flipped; Fashion-MNIST could be, but keeps MNIST practice (crop only) like the other IDX sets.
register_data_kind(
    DataKind(
        "idx",
        load_idx_folder,
        takes_path=True,
        default_augment="crop",
        help="a folder of the four MNIST-format IDX files, gzipped or not",
    )
)
register_data_kind(
    DataKind(
        "fashion-mnist",
        load_fashion_mnist,
        takes_path=False,
        default_augment="crop",
        help="Fashion-MNIST 60,000/10,000 from Debian's dataset-fashion-mnist",
    )
)

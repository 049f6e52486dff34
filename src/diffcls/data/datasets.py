"""Torch datasets over a :class:`~diffcls.data.sources.Split`, data-ratio subsets and data loaders."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from diffcls.data.sources import Split, read_image_file
from diffcls.errors import DiffclsError

DATA_RATIO_SEED = 42  # the DiDiCM reference code's fixed seed for its per-class subsets
HOLDOUT_SEED = 7  # the stratified order that carves a held-out validation split out of a training split


class WorkerDataError(DiffclsError):
    """A :class:`DiffclsError` raised while loading an item in a DataLoader worker process (``--workers N``).

    The loader re-raises a worker's exception in the main process as ``type(e)(text)``, where ``text`` is
    "Caught ... in DataLoader worker process N." followed by the worker's whole traceback. This constructor keeps
    only the original one-line message (the traceback's last line), so the user sees what ``--workers 0`` shows.
    """

    def __init__(self, message: str):
        if "\nOriginal Traceback" in message:
            last = message.rstrip().splitlines()[-1]  # "diffcls.data.datasets.WorkerDataError: <message>"
            message = last.partition(": ")[2] or last
        super().__init__(message)


class ImageDataset(Dataset):
    """Items ``(image float32[3, S, S], label int)`` from a split.

    ``image_fn``, if given, maps the raw ``uint8[H, W, C]`` image (and its index) before the transform; the
    corruption benchmark plugs in there.
    """

    def __init__(
        self,
        split: Split,
        transform: Callable[[torch.Tensor], torch.Tensor],
        image_fn: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ):
        self.split = split
        self.transform = transform
        self.image_fn = image_fn

    def __len__(self) -> int:
        return len(self.split)

    def raw_image(self, index: int) -> np.ndarray:
        """The stored image as ``uint8[H, W, C]``."""
        images = self.split.images
        return images[index] if isinstance(images, np.ndarray) else read_image_file(images[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image = self.raw_image(index)
            if self.image_fn is not None:
                image = self.image_fn(image, index)
        except DiffclsError as e:
            if get_worker_info() is None or isinstance(e, WorkerDataError):
                raise
            raise WorkerDataError(str(e)) from None  # reaches the user as one line, not a worker's traceback
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return self.transform(x), int(self.split.labels[index])


def data_ratio_indices(labels: np.ndarray, ratio: float, seed: int = DATA_RATIO_SEED) -> np.ndarray:
    """Indices keeping ``max(1, floor(n_c · ratio))`` images of each class c, chosen by a seeded permutation.

    Returns sorted ``int64[M]`` indices into ``labels``; ``ratio=1`` keeps everything.
    """
    if not 0.0 < ratio <= 1.0:
        raise DiffclsError(f"--data-ratio must lie in (0, 1], got {ratio}")
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_keep = max(1, int(np.floor(len(idx) * ratio + 1e-9)))
        perm = torch.randperm(len(idx), generator=gen).numpy()
        keep.append(idx[perm[:n_keep]])
    return np.sort(np.concatenate(keep))


def stratified_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed order of all indices whose every prefix is (nearly) stratified: ``int64[N]``.

    Test splits are often sorted by class (mnist5k's is), so "the first N images" would hold only the first
    classes. Here each class is shuffled (seeded) and the classes are interleaved in proportion to their sizes,
    so the first N images hold about N·n_c/total of class c, and a smaller N gives a subset of a larger one.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        position[rng.permutation(idx)] = (np.arange(len(idx)) + 0.5) / len(idx)  # spread over (0, 1)
    return np.lexsort((rng.random(len(labels)), position)).astype(np.int64)


def holdout_split(split: Split, count: int, seed: int = HOLDOUT_SEED) -> tuple[Split, Split]:
    """(train, held out): the first ``count`` images of a fixed stratified order of ``split`` are held out (for
    validation), the rest train; both keep the original order."""
    if count >= len(split):
        raise DiffclsError(f"cannot hold out {count} of {len(split)} training images")
    order = stratified_order(split.labels, seed=seed)
    return subset_split(split, np.sort(order[count:])), subset_split(split, np.sort(order[:count]))


def limit_split(split: Split, count: int | None) -> Split:
    """A fixed stratified subset of ``count`` images (the first of :func:`stratified_order`), kept in data-set
    order; the whole split when ``count`` is None or not smaller than it."""
    if count is None or count >= len(split):
        return split
    if count < 1:
        raise DiffclsError(f"an image count must be >= 1, got {count}")
    return subset_split(split, np.sort(stratified_order(split.labels)[:count]))


def validation_split(split: Split, fraction: float, seed: int = HOLDOUT_SEED) -> tuple[Split, Split | None]:
    """(train, validation): ``round(fraction · N)`` images of a fixed, seeded stratified order of ``split`` are
    held out for validation, the rest train; ``fraction=0`` holds out nothing (validation None)."""
    if not 0.0 <= fraction < 1.0:
        raise DiffclsError(f"--val-split must lie in [0, 1), got {fraction}")
    count = int(round(len(split) * fraction))
    if fraction > 0 and count < 1:
        raise DiffclsError(f"--val-split {fraction} holds out no image of {len(split)}; use a larger fraction")
    return holdout_split(split, count, seed) if count else (split, None)


def training_splits(train: Split, train_limit: int | None = None, val_split: float = 0.0) -> tuple[Split, Split | None]:
    """(training pool, validation split) of a data set's training split: first a fixed stratified subset of
    ``train_limit`` images (None: all), then ``val_split`` of them held out (see :func:`validation_split`). A
    model's data fractions are drawn from the pool, so every fraction is validated on the same images."""
    return validation_split(limit_split(train, train_limit), val_split)


def subset_split(split: Split, indices: np.ndarray) -> Split:
    """The split restricted to ``indices`` (in their order)."""
    images = split.images[indices] if split.in_memory else [split.images[i] for i in indices]
    return Split(images, split.labels[indices])


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    sampler: torch.utils.data.Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed`` (the training loop passes seed + epoch)."""
    generator = torch.Generator().manual_seed(seed) if shuffle and sampler is None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
        worker_init_fn=_seed_worker if workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    # Workers draw augmentations from torch's RNG, seeded by the loader; numpy needs the same seed by hand.
    np.random.seed(torch.initial_seed() % 2**32)

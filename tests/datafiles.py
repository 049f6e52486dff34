"""Shared test data: tiny data sets written to disk in the formats the data specs read."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def blob_images(n_per_class: int, num_classes: int, size: int, channels: int, seed: int = 0):
    """Class-dependent images: class c is a bright square at a class-specific position, plus noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(num_classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 40, size=(size, size, channels))
            r, col = divmod(c, 2)
            s = size // 2
            img[r * s : (r + 1) * s, col * s : (col + 1) * s] += 180
            images.append(img.clip(0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_npz(path: Path) -> Path:
    x_tr, y_tr = blob_images(20, 4, 12, 1, seed=0)
    x_te, y_te = blob_images(5, 4, 12, 1, seed=1)
    np.savez(path, x_train=x_tr[..., 0], y_train=y_tr, x_test=x_te[..., 0], y_test=y_te)
    return path


def write_image_folder(root: Path, n_per_class: int = 3, classes=("cat", "dog", "eel")) -> Path:
    for split, seed in (("train", 0), ("val", 1)):
        x, y = blob_images(n_per_class, len(classes), 16, 3, seed=seed)
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / classes[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def write_cifar_folder(root: Path, n_per_batch: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return root

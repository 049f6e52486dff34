"""Corrupting whole splits: one seed per image, a chunked (optionally parallel) map, and the on-disk cache.

Determinism: every random draw of one image comes from one stream seeded by an integer. :func:`corruption_seed`
derives image i's seed from the data set, corruption, severity and i with SHA-256, so results do not depend on the
process, the number of workers or the order in which images are processed.

Caching: :func:`corrupt_split` can store a corrupted split under
``cache_dir/v<CACHE_VERSION>/<data key>/<set>/<name>-<severity>`` (one ``.npy`` for in-memory splits, a folder of
PNGs for file splits); entries are written atomically, so an existing entry is always complete and is returned
without recomputation. Bump ``CACHE_VERSION`` whenever a change to the corruptions alters the corrupted pixels, so
that old entries are never reused.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from diffcls.data.sources import read_image_file
from diffcls.errors import DiffclsError

CACHE_VERSION = 1  # bump when the corrupted pixels change (cache entries are looked up under v<CACHE_VERSION>)


def corruption_seed(dataset_key: str, name: str, severity: int, index: int) -> int:
    """Seed in ``[0, 2**32)`` for image ``index``: a SHA-256 of all four, so it is the same in every process."""
    text = f"{dataset_key}\0{name}\0{int(severity)}\0{int(index)}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


@dataclass(frozen=True)
class SplitJob:
    """One corruption of a whole split: what (name, severity, set), the seed key, and how (workers, progress bar).

    ``corrupt_image(image, name, severity, corruption_set, seed)`` corrupts one image
    (:func:`diffcls.data.corruptions.corrupt_image`, which imports this module, hence a field). It is pickled to the
    worker processes when ``workers > 1``, so it must be a module-level function.
    """

    name: str
    severity: int
    corruption_set: str
    key: str
    corrupt_image: Callable[[np.ndarray, str, int, str, int], np.ndarray]
    workers: int = 0
    progress: bool | None = None

    def cache_folder(self, cache_dir: str | Path) -> Path:
        return Path(cache_dir) / f"v{CACHE_VERSION}" / _safe_dirname(self.key) / self.corruption_set

    @property
    def entry(self) -> str:
        return f"{self.name}-{self.severity}"

    def corrupt(self, image: np.ndarray, index: int) -> np.ndarray:
        seed = corruption_seed(self.key, self.name, self.severity, index)
        return self.corrupt_image(image, self.name, self.severity, self.corruption_set, seed)


def corrupt_split(
    images: np.ndarray | list[str], job: SplitJob, cache_dir: str | Path | None
) -> np.ndarray | list[str]:
    """Run ``job`` on ``uint8[N, H, W, C]`` images (returns the same shape) or N image paths (returns N PNG paths).

    With ``cache_dir`` the result is stored under ``cache_dir/v<CACHE_VERSION>/<key>/<set>/<name>-<severity>.npy``
    (arrays) or ``.../<name>-<severity>/NNNNNN.png`` (files) and an existing entry is returned as is; without it,
    arrays are not stored and PNGs go to a new temporary folder that the caller owns.
    """
    if isinstance(images, np.ndarray):
        return _corrupt_array(images, job, cache_dir)
    return _corrupt_files([os.fspath(p) for p in images], job, cache_dir)


def dataset_fingerprint(images: np.ndarray | list[str]) -> str:
    """16-hex-digit digest of a split: dtype, shape and bytes of an array; paths, sizes and mtimes of a file list."""
    digest = hashlib.sha256()
    if isinstance(images, np.ndarray):
        digest.update(f"array {images.dtype.str} {images.shape}\0".encode())
        digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))
        return digest.hexdigest()[:16]
    for path in images:
        try:
            st = os.stat(path)
        except OSError as e:
            raise DiffclsError(f"cannot read image file {path}: {e.strerror}") from None
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _safe_dirname(key: str) -> str:
    """The key itself when it is a plain file name, else a sanitised version with a hash suffix (no collisions)."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", key):
        return key
    short = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._")[:60]
    return f"{short}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _corrupt_array(images: np.ndarray, job: SplitJob, cache_dir: str | Path | None) -> np.ndarray:
    path = job.cache_folder(cache_dir) / f"{job.entry}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape != images.shape or cached.dtype != np.uint8:
            raise DiffclsError(
                f"cached corruption {path} holds {cached.dtype}{list(cached.shape)} but the split is "
                f"{images.dtype}{list(images.shape)}: the data key {job.key!r} is reused for other data; delete it"
            )
        return cached
    out = np.empty_like(images)
    for start, chunk in _map_chunks(_array_chunk, images, len(images), job):
        out[start : start + len(chunk)] = chunk
    if path is not None:
        _atomic_save_npy(path, out)
    return out


def _corrupt_files(paths: list[str], job: SplitJob, cache_dir: str | Path | None) -> list[str]:
    if cache_dir is None:
        cache_dir = tempfile.mkdtemp(prefix="diffcls-corruptions-")
    final = job.cache_folder(cache_dir) / job.entry
    if not final.is_dir():  # the folder only ever appears complete, by a rename
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{job.entry}.tmp-"))
        try:
            for _ in _map_chunks(_file_chunk, (paths, str(tmp)), len(paths), job):
                pass
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race with another process writing the same entry
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = [str(final / f"{i:06d}.png") for i in range(len(paths))]
    if paths and not os.path.isfile(out[-1]):
        raise DiffclsError(f"cached corruption folder {final} has fewer than {len(paths)} images; delete it")
    return out


def _array_chunk(images: np.ndarray, start: int, job: SplitJob) -> np.ndarray:
    return np.stack([job.corrupt(image, start + k) for k, image in enumerate(images)])


def _file_chunk(source: tuple[list[str], str], start: int, job: SplitJob) -> None:
    paths, folder = source
    for k, path in enumerate(paths):
        out = job.corrupt(read_image_file(path), start + k)
        Image.fromarray(out).save(os.path.join(folder, f"{start + k:06d}.png"), format="PNG")


def _map_chunks(fn: Callable, data, n: int, job: SplitJob):
    """Yield ``(start, fn(data[start:stop], start, job))`` over chunks of ``range(n)``, in order, with a progress bar.

    ``data`` is a sequence, or a (sequence, extra) pair whose sequence gets sliced. Chunks run in this process for
    workers <= 1, else in a process pool; the seeds depend only on the image index, so the results are the same.
    """
    parallel = job.workers > 1 and n > 1
    size = max(1, math.ceil(n / (job.workers * 4))) if parallel else 1
    starts = range(0, n, size)

    def piece(start: int):
        if isinstance(data, tuple):
            return data[0][start : start + size], data[1]
        return data[start : start + size]

    bar = tqdm(total=n, desc=f"{job.name} s{job.severity}", disable=None if job.progress is None else not job.progress)
    with bar, contextlib.ExitStack() as stack:
        if not parallel:
            for start in starts:
                yield start, fn(piece(start), start, job)
                bar.update(min(size, n - start))
            return
        pool = stack.enter_context(cf.ProcessPoolExecutor(max_workers=job.workers, mp_context=_pool_context()))
        futures = {pool.submit(fn, piece(start), start, job): start for start in starts}
        results = {}
        try:
            for future in cf.as_completed(futures):
                start = futures[future]
                results[start] = future.result()
                bar.update(min(size, n - start))
        except BaseException:  # e.g. an unreadable file: do not wait for the chunks not started yet
            for future in futures:
                future.cancel()
            raise
        for start in starts:
            yield start, results.pop(start)


def _pool_context():
    # fork: workers inherit the imported modules (fast start); the work is numpy/scipy/cv2 only. Do not touch cv2's
    # thread settings in a forked worker: cv2.setNumThreads deadlocks there once the parent has used cv2's pool.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file next to ``path``, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

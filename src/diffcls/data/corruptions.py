"""Image corruptions for robustness benchmarks: the 19 ImageNet-C corruptions at five severities.

Each corruption is one :class:`Corruption` entry of :data:`CORRUPTIONS` (name, family, CIFAR-10-C parameters and
function); :data:`CORRUPTION_NAMES`, :data:`CORRUPTION_FAMILIES` and :data:`FAMILY_NAMES` are derived from it.

Two parameter sets exist for the same 19 algorithms (15 benchmark corruptions + 4 held-out ones: speckle noise,
Gaussian blur, spatter, saturate), both from Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019):

``imagenet``
    The ImageNet-C parameters, tuned for 224 px images, run by the ``imagecorruptions`` package (Michaelis et al.),
    which generalises them to any size >= 32 px.
``cifar``
    The CIFAR-10-C parameters (``ImageNet-C/create_c/make_cifar_c.py`` in ``hendrycks/robustness``), tuned for 32 px
    images: milder noise, smaller blur kernels, frost crops from 5x smaller frost pictures. Ported in
    :mod:`diffcls.data.cifar_c` (which lists the deviations from ``make_cifar_c.py``); the parameters are the
    entries' ``cifar_params`` (see also :data:`CIFAR_PARAMS`).

:func:`default_corruption_set` picks ``cifar`` for images of at most 64 px and ``imagenet`` above: ImageNet-C's
severities wipe out a 32 px image (e.g. a 10-px-radius defocus disk), CIFAR-10-C's barely touch a 224 px one.

Both sets need images of at least :data:`MIN_CORRUPTION_SIZE` = 32 px a side (``imagecorruptions`` refuses smaller
ones, and the CIFAR parameters were tuned at 32 px). Smaller images (MNIST's 28 px) are upscaled with PIL bicubic
to at least 32 px keeping the aspect ratio, corrupted, and resized back; grayscale images are replicated to RGB for
the corruption and averaged back to one channel.

Determinism: one image's random draws all come from one stream seeded by an integer (for whole splits,
:func:`corruption_seed` of the data set, corruption, severity and index). The ``cifar`` set draws from
``np.random.RandomState(seed)`` in the reference's call order, so wherever the two tables share a parameter (e.g.
Gaussian noise 0.08 = CIFAR severity 3 = ImageNet severity 1) both sets give the same image for the same seed.
The ``imagenet`` set seeds numpy's global RNG (restored afterwards), which ``imagecorruptions`` draws from.

Whole splits (:func:`corrupt_images`) run in parallel and are cached on disk by :mod:`diffcls.data.corruption_cache`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagecorruptions
import numpy as np
from PIL import Image

from diffcls.data import cifar_c
from diffcls.data.corruption_cache import CACHE_VERSION, SplitJob, corrupt_split, corruption_seed, dataset_fingerprint
from diffcls.errors import DiffclsError

__all__ = [
    "CACHE_VERSION",
    "CIFAR_PARAMS",
    "CORRUPTIONS",
    "CORRUPTION_FAMILIES",
    "CORRUPTION_NAMES",
    "CORRUPTION_SETS",
    "FAMILY_NAMES",
    "MIN_CORRUPTION_SIZE",
    "Corruption",
    "check_corruption",
    "corrupt_image",
    "corrupt_images",
    "corruption_seed",
    "dataset_fingerprint",
    "default_corruption_set",
]

CORRUPTION_SETS: tuple[str, ...] = ("imagenet", "cifar")
MIN_CORRUPTION_SIZE = 32


def _numba_seed(seed: int) -> int:
    """imagecorruptions' glass blur draws from numba's own RNG; unseeded it would use fresh OS entropy."""
    return seed


def _global_stream(seed: int) -> np.random.Generator:
    """skimage's s&p noise wants a Generator: share numpy's global MT19937 stream (already seeded with ``seed``)."""
    return np.random.Generator(np.random.get_bit_generator())


@dataclass(frozen=True)
class Corruption:
    """One corruption: its name (as in ``imagecorruptions``), family, and how each parameter set applies it.

    ``cifar_params`` holds the CIFAR-10-C parameters of severities 1..5 for ``cifar_fn``. ``imagenet_seed``, for
    the corruptions whose ``imagecorruptions`` version takes a ``seed`` argument instead of drawing from numpy's
    global RNG, maps the image's seed to that argument.
    """

    name: str
    family: str
    cifar_params: tuple
    cifar_fn: cifar_c.CifarFn
    imagenet_seed: Callable[[int], object] | None = None

    def apply(self, rgb: np.ndarray, severity: int, corruption_set: str, seed: int) -> np.ndarray:
        """uint8[H, W, 3] -> uint8[H, W, 3] with the ``corruption_set`` parameters; deterministic given ``seed``."""
        if corruption_set == "cifar":
            return self._cifar(rgb, severity, seed)
        return self._imagenet(rgb, severity, seed)

    def _cifar(self, rgb: np.ndarray, severity: int, seed: int) -> np.ndarray:
        """CIFAR-10-C parameters; truncates to uint8 like make_cifar_c.py."""
        out = self.cifar_fn(rgb, self.cifar_params[severity - 1], np.random.RandomState(seed))
        return np.clip(out, 0, 255).astype(np.uint8)

    def _imagenet(self, rgb: np.ndarray, severity: int, seed: int) -> np.ndarray:
        """ImageNet-C parameters via ``imagecorruptions``, with numpy's global RNG seeded (and restored afterwards)."""
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            kwargs = {"seed": self.imagenet_seed(seed)} if self.imagenet_seed is not None else {}
            return imagecorruptions.corrupt(rgb, severity=severity, corruption_name=self.name, **kwargs)
        finally:
            np.random.set_state(state)


# The 19 corruptions in imagecorruptions' order (15 benchmark ones, then 4 held-out ones); each comment says what a
# severity's CIFAR-10-C parameters mean.
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "noise", (0.04, 0.06, 0.08, 0.09, 0.10), cifar_c.gaussian_noise),  # std in [0, 1]
        Corruption("shot_noise", "noise", (500, 250, 100, 75, 50), cifar_c.shot_noise),  # photons at full intensity
        Corruption(  # fraction of salt-and-pepper values
            "impulse_noise",
            "noise",
            (0.01, 0.02, 0.03, 0.05, 0.07),
            cifar_c.impulse_noise,
            imagenet_seed=_global_stream,
        ),
        Corruption(  # disk radius, anti-alias sigma
            "defocus_blur",
            "blur",
            ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
            cifar_c.defocus_blur,
        ),
        Corruption(  # sigma, max shift, iterations
            "glass_blur",
            "blur",
            ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
            cifar_c.glass_blur,
            imagenet_seed=_numba_seed,
        ),
        Corruption(  # kernel radius, sigma (ImageMagick convention)
            "motion_blur",
            "blur",
            ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
            cifar_c.motion_blur,
        ),
        Corruption(  # np.arange(start, stop, step) of zoom factors
            "zoom_blur",
            "blur",
            ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),
            cifar_c.zoom_blur,
        ),
        Corruption(  # flake mean, std, zoom, threshold, motion radius, motion sigma, image weight
            "snow",
            "weather",
            (
                (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
                (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
            ),
            cifar_c.snow,
        ),
        Corruption(  # image weight, frost weight
            "frost",
            "weather",
            ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
            cifar_c.frost,
        ),
        Corruption(  # fog strength, plasma wibble decay
            "fog",
            "weather",
            ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
            cifar_c.fog,
        ),
        Corruption("brightness", "weather", (0.05, 0.1, 0.15, 0.2, 0.3), cifar_c.brightness),  # added to HSV value
        Corruption("contrast", "digital", (0.75, 0.5, 0.4, 0.3, 0.15), cifar_c.contrast),  # factor on the deviation
        Corruption(  # alpha, sigma, affine jitter, as fractions of the image size
            "elastic_transform",
            "digital",
            ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
            cifar_c.elastic_transform,
        ),
        Corruption("pixelate", "digital", (0.95, 0.9, 0.85, 0.75, 0.65), cifar_c.pixelate),  # downscale factor
        Corruption("jpeg_compression", "digital", (80, 65, 58, 50, 40), cifar_c.jpeg_compression),  # JPEG quality
        Corruption("speckle_noise", "noise", (0.06, 0.1, 0.12, 0.16, 0.2), cifar_c.speckle_noise),  # multiplicative std
        Corruption("gaussian_blur", "blur", (0.4, 0.6, 0.7, 0.8, 1), cifar_c.gaussian_blur),  # sigma
        Corruption(  # liquid mean, std, blur sigma, threshold, water intensity / mud blur sigma, 0 = water / 1 = mud
            "spatter",
            "weather",
            (
                (0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1),
            ),
            cifar_c.spatter,
        ),
        Corruption(  # HSV saturation factor, offset
            "saturate",
            "digital",
            ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
            cifar_c.saturate,
        ),
    )
}

CORRUPTION_NAMES: tuple[str, ...] = tuple(CORRUPTIONS)
FAMILY_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.family for c in CORRUPTIONS.values()))  # order of first use
# Grouped by family, each in CORRUPTION_NAMES order.
CORRUPTION_FAMILIES: dict[str, str] = {
    c.name: family for family in FAMILY_NAMES for c in CORRUPTIONS.values() if c.family == family
}
CIFAR_PARAMS: dict[str, tuple] = {c.name: c.cifar_params for c in CORRUPTIONS.values()}


# ----------------------------------------------------------------------------------------------------- validation


def default_corruption_set(image_size: int) -> str:
    """``"cifar"`` for images of at most 64 px, else ``"imagenet"``."""
    return "cifar" if image_size <= 64 else "imagenet"


def check_corruption(name: str, severity: int, corruption_set: str = "cifar") -> None:
    """Raise :class:`DiffclsError` for an unknown corruption or set, or a severity that is not an int in 1..5."""
    if name not in CORRUPTIONS:
        raise DiffclsError(f"unknown corruption {name!r}: expected one of {', '.join(CORRUPTIONS)}")
    if corruption_set not in CORRUPTION_SETS:
        raise DiffclsError(f"unknown corruption set {corruption_set!r}: expected one of {', '.join(CORRUPTION_SETS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise DiffclsError(f"corruption severity must be an integer in 1..5, got {severity!r}")


# ------------------------------------------------------------------------------------------------------ one image


def corrupt_image(image: np.ndarray, name: str, severity: int, corruption_set: str, seed: int) -> np.ndarray:
    """Corrupt one image; deterministic given ``seed``.

    ``image`` is ``uint8[H, W, C]`` with C in {1, 3}, or ``uint8[H, W]``; the result is uint8 of the same shape.
    Grayscale images are replicated to RGB for the corruption and averaged (rounded) back. Images with a side under
    32 px are upscaled (PIL bicubic, aspect kept) so that the short side is 32, corrupted, and resized back to H×W.
    """
    check_corruption(name, severity, corruption_set)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DiffclsError(f"corrupt_image expects a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise DiffclsError(f"corrupt_image expects an image of shape [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    rgb = image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image.reshape(*image.shape[:2], 1), 3, 2)
    h, w = rgb.shape[:2]
    work_size = _work_size(h, w)
    if work_size != (h, w):
        rgb = _resize(rgb, work_size)
    out = CORRUPTIONS[name].apply(np.ascontiguousarray(rgb), int(severity), corruption_set, int(seed))
    if work_size != (h, w):
        out = _resize(out, (h, w))
    if image.ndim == 3 and image.shape[2] == 3:
        return out
    gray = np.round(out.mean(axis=2)).astype(np.uint8)
    return gray if image.ndim == 2 else gray[..., None]


def _work_size(h: int, w: int) -> tuple[int, int]:
    """(H, W) scaled up so that the short side is at least MIN_CORRUPTION_SIZE."""
    if min(h, w) >= MIN_CORRUPTION_SIZE:
        return h, w
    scale = MIN_CORRUPTION_SIZE / min(h, w)
    return max(MIN_CORRUPTION_SIZE, round(h * scale)), max(MIN_CORRUPTION_SIZE, round(w * scale))


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[size[0], size[1], 3], PIL bicubic (antialiased when shrinking)."""
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BICUBIC))


# --------------------------------------------------------------------------------------------------- whole splits


def corrupt_images(
    images: np.ndarray | list[str],
    name: str,
    severity: int,
    *,
    corruption_set: str,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool | None = None,
    dataset_key: str | None = None,
) -> np.ndarray | list[str]:
    """Corrupt every image of a split; image i is corrupted with seed ``corruption_seed(key, name, severity, i)``.

    ``images`` is ``uint8[N, H, W, C]`` (returns ``uint8[N, H, W, C]``) or a list of N image file paths (returns N
    PNG paths). ``key`` is ``dataset_key`` or :func:`dataset_fingerprint` of the images. With ``cache_dir`` the result
    is stored under ``cache_dir/v<CACHE_VERSION>/<key>/<set>/<name>-<severity>.npy`` (arrays) or
    ``.../<name>-<severity>/NNNNNN.png``
    (files) and an existing entry is returned as is; without it, arrays are not stored and PNGs go to a new temporary
    folder that the caller owns. ``workers > 1`` spreads chunks of images over that many processes (same result).
    ``progress``: None shows a bar only on a terminal.
    """
    check_corruption(name, severity, corruption_set)
    if isinstance(images, np.ndarray) and (images.dtype != np.uint8 or images.ndim not in (3, 4)):
        raise DiffclsError(f"corrupt_images expects uint8[N, H, W, C] images, got {images.dtype}{list(images.shape)}")
    key = dataset_key or dataset_fingerprint(images)
    job = SplitJob(name, int(severity), corruption_set, key, corrupt_image, workers, progress)
    return corrupt_split(images, job, cache_dir)

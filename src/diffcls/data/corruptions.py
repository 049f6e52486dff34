"""Image corruptions for robustness benchmarks: the 19 ImageNet-C corruptions at five severities.

Two parameter sets exist for the same 19 algorithms (15 benchmark corruptions + 4 held-out ones: speckle noise,
Gaussian blur, spatter, saturate), both from Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019):

``imagenet``
    The ImageNet-C parameters, tuned for 224 px images, run by the ``imagecorruptions`` package (Michaelis et al.),
    which generalises them to any size >= 32 px.
``cifar``
    The CIFAR-10-C parameters (``ImageNet-C/create_c/make_cifar_c.py`` in ``hendrycks/robustness``), tuned for 32 px
    images: milder noise, smaller blur kernels, frost crops from 5x smaller frost pictures. Implemented here; see
    :data:`CIFAR_PARAMS`. Deviations from ``make_cifar_c.py``: sizes are the image's own instead of a hard-coded 32
    (fog's plasma map is the next power of two >= max(H, W), frost pictures are scaled by ``0.2 * max(H, W) / 32``,
    elastic's ``IMSIZE`` is ``min(H, W)``); motion blur (also inside snow) is ``imagecorruptions``' numpy port of
    ImageMagick's, since ImageMagick is not a dependency; glass blur reproduces the reference's *effective* pixel
    "swap" (which, on numpy views, copies a neighbour instead of swapping); impulse noise uses scikit-image's s&p
    noise like the reference, drawn from the image's seeded stream.

:func:`default_corruption_set` picks ``cifar`` for images of at most 64 px and ``imagenet`` above: ImageNet-C's
severities wipe out a 32 px image (e.g. a 10-px-radius defocus disk), CIFAR-10-C's barely touch a 224 px one.

Both sets need images of at least :data:`MIN_CORRUPTION_SIZE` = 32 px a side (``imagecorruptions`` refuses smaller
ones, and the CIFAR parameters were tuned at 32 px). Smaller images (MNIST's 28 px) are upscaled with PIL bicubic
to at least 32 px keeping the aspect ratio, corrupted, and resized back; grayscale images are replicated to RGB for
the corruption and averaged back to one channel.

Determinism: every random draw of one image comes from one stream seeded by an integer. :func:`corruption_seed`
derives image i's seed from the data set, corruption, severity and i with SHA-256, so results do not depend on the
process, the number of workers or the order in which images are processed. The ``cifar`` set draws from
``np.random.RandomState(seed)`` in the reference's call order, so wherever the two tables share a parameter (e.g.
Gaussian noise 0.08 = CIFAR severity 3 = ImageNet severity 1) both sets give the same image for the same seed.
The ``imagenet`` set seeds numpy's global RNG (restored afterwards), which ``imagecorruptions`` draws from.

Caching: :func:`corrupt_images` can store a corrupted split under
``cache_dir/v<CACHE_VERSION>/<data key>/<set>/<name>-<severity>`` (one ``.npy`` for in-memory splits, a folder of
PNGs for file splits); entries are written atomically, so an existing entry is always complete and is returned
without recomputation. Bump ``CACHE_VERSION`` whenever a change here alters the corrupted pixels, so that old
entries are never reused.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import importlib.resources
import io
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import imagecorruptions
import numpy as np
import skimage as sk
from imagecorruptions.corruptions import _motion_blur, disk
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.filters import gaussian
from tqdm import tqdm

from diffcls.data.sources import read_image_file
from diffcls.errors import DiffclsError

CORRUPTION_NAMES: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
FAMILY_NAMES: tuple[str, ...] = ("noise", "blur", "weather", "digital")
CORRUPTION_FAMILIES: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"), "blur"),
    **dict.fromkeys(("snow", "frost", "fog", "brightness", "spatter"), "weather"),
    **dict.fromkeys(("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"), "digital"),
}
CORRUPTION_SETS: tuple[str, ...] = ("imagenet", "cifar")
MIN_CORRUPTION_SIZE = 32
CACHE_VERSION = 1  # bump when the corrupted pixels change (cache entries are looked up under v<CACHE_VERSION>)

# CIFAR-10-C parameters (make_cifar_c.py), severity 1..5 per corruption; the meaning of each tuple is noted.
CIFAR_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std (image in [0, 1])
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson photon count at full intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of salt-and-pepper values
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, anti-alias sigma
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, max shift, iters
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # kernel radius, sigma (ImageMagick convention)
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),  # arange
    # snow: flake mean, std, zoom, threshold, motion radius, motion sigma, image weight
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image weight, frost weight
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # fog strength, plasma wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the deviation from the channel means
    "elastic_transform": (  # alpha, sigma, affine jitter, as fractions of the image size
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03),
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downscale factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # multiplicative noise std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),  # sigma
    # spatter: liquid mean, std, blur sigma, threshold, intensity (water) / mud blur sigma, 0 = water / 1 = mud
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # HSV saturation factor, offset
}


# ----------------------------------------------------------------------------------------------- validation, seeds


def default_corruption_set(image_size: int) -> str:
    """``"cifar"`` for images of at most 64 px, else ``"imagenet"``."""
    return "cifar" if image_size <= 64 else "imagenet"


def check_corruption(name: str, severity: int, corruption_set: str = "cifar") -> None:
    """Raise :class:`DiffclsError` for an unknown corruption or set, or a severity that is not an int in 1..5."""
    if name not in CORRUPTION_NAMES:
        raise DiffclsError(f"unknown corruption {name!r}: expected one of {', '.join(CORRUPTION_NAMES)}")
    if corruption_set not in CORRUPTION_SETS:
        raise DiffclsError(f"unknown corruption set {corruption_set!r}: expected one of {', '.join(CORRUPTION_SETS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise DiffclsError(f"corruption severity must be an integer in 1..5, got {severity!r}")


def corruption_seed(dataset_key: str, name: str, severity: int, index: int) -> int:
    """Seed in ``[0, 2**32)`` for image ``index``: a SHA-256 of all four, so it is the same in every process."""
    text = f"{dataset_key}\0{name}\0{int(severity)}\0{int(index)}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


# ------------------------------------------------------------------------------------------------ one image


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
    fn = _corrupt_cifar if corruption_set == "cifar" else _corrupt_imagenet
    out = fn(np.ascontiguousarray(rgb), name, int(severity), int(seed))
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


def _corrupt_imagenet(rgb: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """ImageNet-C parameters via ``imagecorruptions``, with numpy's global RNG seeded (and restored afterwards)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        kwargs: dict = {}
        if name == "glass_blur":  # draws from numba's own RNG; unseeded it would use fresh OS entropy
            kwargs["seed"] = seed
        elif name == "impulse_noise":  # skimage wants a Generator; share the seeded global MT19937 stream
            kwargs["seed"] = np.random.Generator(np.random.get_bit_generator())
        return imagecorruptions.corrupt(rgb, severity=severity, corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)


def _corrupt_cifar(rgb: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """CIFAR-10-C parameters: uint8[H, W, 3] -> uint8[H, W, 3]; truncates to uint8 like make_cifar_c.py."""
    out = _CIFAR_FUNCTIONS[name](rgb, CIFAR_PARAMS[name][severity - 1], np.random.RandomState(seed))
    return np.clip(out, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- CIFAR-10-C corruptions
# Each takes x: uint8[H, W, 3], the severity's parameters c and the image's RandomState, and returns an array in
# [0, 255] of shape [H, W, 3]. Random draws happen in the same order as in make_cifar_c.py.


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(rng.poisson(x / 255.0 * c) / c, 0, 1) * 255


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    # skimage's s&p as in the reference; a Generator over the RandomState's MT19937 keeps one random stream.
    noisy = sk.util.random_noise(x / 255.0, mode="s&p", rng=np.random.Generator(rng._bit_generator), amount=c)
    return np.clip(noisy, 0, 1) * 255


def _speckle_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    x = x / 255.0
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _gaussian_blur(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(gaussian(x / 255.0, sigma=c, channel_axis=-1), 0, 1) * 255


def _glass_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    sigma, max_delta, iterations = c
    x = np.uint8(gaussian(x / 255.0, sigma=sigma, channel_axis=-1) * 255)
    for _ in range(iterations):
        x = _shuffle_pixels(x, max_delta, rng)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _shuffle_pixels(x: np.ndarray, max_delta: int, rng: np.random.RandomState) -> np.ndarray:
    """The reference's pixel loop, vectorised.

    make_cifar_c visits (h, w) from the bottom-right corner with offsets dx, dy = randint(-d, d, 2) and "swaps"
    x[h, w] with x[h+dy, w+dx] by tuple assignment of numpy views, which in effect only copies the neighbour into
    x[h, w]. With d = 1 (every CIFAR severity) the offsets are -1 or 0, so every source pixel is read before the loop
    overwrites it, and one gather reproduces the loop exactly (same draws: one randint call of all offsets).
    """
    if max_delta != 1:
        raise ValueError("the vectorised glass-blur shuffle is exact only for max_delta == 1")
    h, w = x.shape[:2]
    rows = np.arange(h - 1, 1, -1)[:, None]
    cols = np.arange(w - 1, 1, -1)[None, :]
    offsets = rng.randint(-1, 1, size=(rows.shape[0], cols.shape[1], 2))  # (dx, dy) per visited pixel
    x = x.copy()
    x[rows, cols] = x[rows + offsets[..., 1], cols + offsets[..., 0]]
    return x


def _defocus_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    kernel = disk(radius=c[0], alias_blur=c[1])
    x = x / 255.0
    blurred = np.stack([cv2.filter2D(x[:, :, k], -1, kernel) for k in range(3)], axis=2)
    return np.clip(blurred, 0, 1) * 255


def _motion_blur_fn(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(_motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45)), 0, 255)


def _zoom_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    factors = np.arange(*c)
    x = (x / 255.0).astype(np.float32)
    total = np.zeros_like(x)
    for factor in factors:
        total += _clipped_zoom(x, factor)
    return np.clip((x + total) / (len(factors) + 1), 0, 1) * 255


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom float[H, W, C] into its centre by ``factor`` (bilinear), keeping H×W; the crop and trim are centred."""
    h, w = img.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = scipy_zoom(img[top:top + ch, left:left + cw], (factor, factor, 1), order=1)
    top, left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[top:top + h, left:left + w]


def _snow(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    flakes = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    flakes = _clipped_zoom(flakes[..., None], c[2])[..., 0]
    flakes[flakes < c[3]] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    flakes = _motion_blur(flakes, radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    flakes = (np.round(np.clip(flakes, 0, 255)) / 255.0)[..., None]  # the reference round-trips an 8-bit PNG
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


def _frost(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    h, w = x.shape[:2]
    index = rng.randint(5)  # the reference picks among the first 5 of the 6 frost pictures
    frost = _frost_picture(index, 0.2 * max(h, w) / 32)  # 0.2 at 32 px, as in the reference
    top, left = rng.randint(0, frost.shape[0] - h), rng.randint(0, frost.shape[1] - w)
    crop = frost[top:top + h, left:left + w, ::-1]  # BGR -> RGB
    return np.clip(c[0] * x + c[1] * crop, 0, 255)


@functools.lru_cache(maxsize=32)
def _frost_picture(index: int, scale: float) -> np.ndarray:
    """One of imagecorruptions' bundled frost pictures, uint8 BGR, resized by ``scale`` (cv2 bilinear)."""
    name = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")[index]
    with importlib.resources.as_file(importlib.resources.files("imagecorruptions") / "frost" / name) as path:
        picture = cv2.imread(str(path))
    if picture is None:
        raise DiffclsError(f"cannot read imagecorruptions' frost picture {name}")
    return cv2.resize(picture, (0, 0), fx=scale, fy=scale)


def _fog(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    h, w = x.shape[:2]
    x = x / 255.0
    max_val = x.max()
    mapsize = 1 << (max(h, w) - 1).bit_length()  # diamond-square needs a power of two
    x = x + c[0] * _plasma_fractal(mapsize, c[1], rng)[:h, :w, None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _plasma_fractal(mapsize: int, decay: float, rng: np.random.RandomState) -> np.ndarray:
    """Diamond-square height map float64[mapsize, mapsize] in [0, 1]; the noise amplitude shrinks by ``decay``."""
    heights = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def noisy_mean(four_sum: np.ndarray) -> np.ndarray:
        return four_sum / 4 + wibble * rng.uniform(-wibble, wibble, four_sum.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0::step, 0::step]
        square_sum = corners + np.roll(corners, -1, axis=0)
        square_sum += np.roll(square_sum, -1, axis=1)
        heights[half::step, half::step] = noisy_mean(square_sum)  # square centres
        centres = heights[half::step, half::step]
        across = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        heights[0::step, half::step] = noisy_mean(across)  # diamond centres on the corner rows
        down = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        heights[half::step, 0::step] = noisy_mean(down)  # diamond centres on the corner columns
        step //= 2
        wibble /= decay
    heights -= heights.min()
    return heights / heights.max()


def _spatter(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    liquid = gaussian(rng.normal(size=x.shape[:2], loc=c[0], scale=c[1]), sigma=c[2])
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        return _water_spatter(x, liquid, c[4])
    mud = gaussian((liquid > c[3]).astype(np.float32), sigma=c[4])
    mud[mud < 0.8] = 0
    mud = mud[..., None]
    brown = np.array([63, 42, 20], dtype=np.float32) / 255.0
    return np.clip(x * (1 - mud) + brown * mud, 0, 1) * 255


def _water_spatter(x: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """Pale turquoise drops whose brightness follows an embossed distance-to-edge map of the liquid layer."""
    liquid = (liquid * 255).astype(np.uint8)
    dist = cv2.distanceTransform(255 - cv2.Canny(liquid, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
    drops = liquid * dist
    drops = drops / max(float(drops.max()), 1e-12) * intensity  # the reference divides by 0 when there are no drops
    turquoise = np.array([175, 238, 238], dtype=np.float32) / 255.0
    return np.clip(x + drops[..., None] * turquoise, 0, 1) * 255


def _contrast(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _brightness(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def _saturate(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def _jpeg_compression(x: np.ndarray, c: int, rng: np.random.RandomState) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=c)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _pixelate(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    h, w = x.shape[:2]
    small = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


def _elastic_transform(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    h, w = x.shape[:2]
    alpha, sigma, jitter = (f * min(h, w) for f in c)  # the reference's fractions of IMSIZE = 32
    image = x.astype(np.float32) / 255.0
    # random affine: move three points around the centre by up to `jitter` px (points in (row, col) as the reference)
    centre, reach = np.float32([h, w]) // 2, min(h, w) // 3
    src = np.float32([centre + reach, [centre[0] + reach, centre[1] - reach], centre - reach])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    image = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    # smooth random displacement field, `alpha` px at most
    dx = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    rows, cols, chans = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    coords = np.stack([rows + dy[..., None], cols + dx[..., None], chans])
    return np.clip(map_coordinates(image, coords, order=1, mode="reflect"), 0, 1) * 255


_CIFAR_FUNCTIONS: dict[str, Callable[[np.ndarray, object, np.random.RandomState], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur_fn,
    "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression, "speckle_noise": _speckle_noise, "gaussian_blur": _gaussian_blur,
    "spatter": _spatter, "saturate": _saturate,
}


# ------------------------------------------------------------------------------------------------ whole splits


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
    job = _Job(name, int(severity), corruption_set, key, workers, progress)
    if isinstance(images, np.ndarray):
        return _corrupt_array(images, job, cache_dir)
    return _corrupt_files([os.fspath(p) for p in images], job, cache_dir)


class _Job:
    """What to do to a split: corruption, severity, set, seed key, and how (workers, progress bar)."""

    def __init__(self, name: str, severity: int, corruption_set: str, key: str, workers: int, progress: bool | None):
        self.name, self.severity, self.corruption_set, self.key = name, severity, corruption_set, key
        self.workers, self.progress = workers, progress

    def cache_folder(self, cache_dir: str | Path) -> Path:
        return Path(cache_dir) / f"v{CACHE_VERSION}" / _safe_dirname(self.key) / self.corruption_set

    @property
    def entry(self) -> str:
        return f"{self.name}-{self.severity}"

    def corrupt(self, image: np.ndarray, index: int) -> np.ndarray:
        seed = corruption_seed(self.key, self.name, self.severity, index)
        return corrupt_image(image, self.name, self.severity, self.corruption_set, seed)


def _safe_dirname(key: str) -> str:
    """The key itself when it is a plain file name, else a sanitised version with a hash suffix (no collisions)."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", key):
        return key
    short = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._")[:60]
    return f"{short}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _corrupt_array(images: np.ndarray, job: _Job, cache_dir: str | Path | None) -> np.ndarray:
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
        out[start:start + len(chunk)] = chunk
    if path is not None:
        _atomic_save_npy(path, out)
    return out


def _corrupt_files(paths: list[str], job: _Job, cache_dir: str | Path | None) -> list[str]:
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


def _array_chunk(images: np.ndarray, start: int, job: _Job) -> np.ndarray:
    return np.stack([job.corrupt(image, start + k) for k, image in enumerate(images)])


def _file_chunk(source: tuple[list[str], str], start: int, job: _Job) -> None:
    paths, folder = source
    for k, path in enumerate(paths):
        out = job.corrupt(read_image_file(path), start + k)
        Image.fromarray(out).save(os.path.join(folder, f"{start + k:06d}.png"), format="PNG")


def _map_chunks(fn: Callable, data, n: int, job: _Job):
    """Yield ``(start, fn(data[start:stop], start, job))`` over chunks of ``range(n)``, in order, with a progress bar.

    ``data`` is a sequence, or a (sequence, extra) pair whose sequence gets sliced. Chunks run in this process for
    workers <= 1, else in a process pool; the seeds depend only on the image index, so the results are the same.
    """
    parallel = job.workers > 1 and n > 1
    size = max(1, math.ceil(n / (job.workers * 4))) if parallel else 1
    starts = range(0, n, size)

    def piece(start: int):
        if isinstance(data, tuple):
            return data[0][start:start + size], data[1]
        return data[start:start + size]

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

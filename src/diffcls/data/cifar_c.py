"""The CIFAR-10-C port: the 19 corruption functions with the parameters of CIFAR-10-C's 32 px images.

A port of ``ImageNet-C/create_c/make_cifar_c.py`` in ``hendrycks/robustness`` (Hendrycks & Dietterich, ICLR 2019);
the per-severity parameters live in :data:`diffcls.data.corruptions.CORRUPTIONS`. Every function here is a
:data:`CifarFn`: it takes ``x: uint8[H, W, 3]``, one severity's parameters ``c`` and the image's
``np.random.RandomState``, draws from it in the same order as ``make_cifar_c.py``, and returns an array of shape
``[H, W, 3]`` with values in [0, 255] (the caller truncates it to uint8, as the reference does).

Deviations from ``make_cifar_c.py``: sizes are the image's own instead of a hard-coded 32 (fog's plasma map is the
next power of two >= max(H, W), frost pictures are scaled by ``0.2 * max(H, W) / 32``, elastic's ``IMSIZE`` is
``min(H, W)``); motion blur (also inside snow) is ``imagecorruptions``' numpy port of ImageMagick's, since
ImageMagick is not a dependency; glass blur reproduces the reference's *effective* pixel "swap" (which, on numpy
views, copies a neighbour instead of swapping); impulse noise uses scikit-image's s&p noise like the reference, drawn
from the image's seeded stream.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math
from collections.abc import Callable

import cv2
import numpy as np
import skimage as sk
from imagecorruptions.corruptions import _motion_blur, disk
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.filters import gaussian

from diffcls.errors import DiffclsError

CifarFn = Callable[[np.ndarray, object, np.random.RandomState], np.ndarray]
"""(x: uint8[H, W, 3], one severity's parameters, the image's RandomState) -> values in [0, 255], shape [H, W, 3]."""


def gaussian_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Additive Gaussian noise of std ``c`` (image in [0, 1])."""
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Poisson (photon) noise with ``c`` photons at full intensity."""
    return np.clip(rng.poisson(x / 255.0 * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Salt-and-pepper noise on a fraction ``c`` of the values."""
    # skimage's s&p as in the reference; a Generator over the RandomState's MT19937 keeps one random stream.
    noisy = sk.util.random_noise(x / 255.0, mode="s&p", rng=np.random.Generator(rng._bit_generator), amount=c)
    return np.clip(noisy, 0, 1) * 255


def speckle_noise(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Multiplicative Gaussian noise of std ``c``."""
    x = x / 255.0
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


def gaussian_blur(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Gaussian blur of sigma ``c`` px."""
    return np.clip(gaussian(x / 255.0, sigma=c, channel_axis=-1), 0, 1) * 255


def glass_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Blur (sigma ``c[0]``), move pixels by up to ``c[1]`` px ``c[2]`` times, blur again."""
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


def defocus_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Convolution with an anti-aliased disk of radius ``c[0]`` (alias sigma ``c[1]``)."""
    kernel = disk(radius=c[0], alias_blur=c[1])
    x = x / 255.0
    blurred = np.stack([cv2.filter2D(x[:, :, k], -1, kernel) for k in range(3)], axis=2)
    return np.clip(blurred, 0, 1) * 255


def motion_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """ImageMagick-style motion blur (radius ``c[0]``, sigma ``c[1]``) at a random angle in ±45°."""
    return np.clip(_motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45)), 0, 255)


def zoom_blur(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Mean of the image and its centre zooms by the factors ``np.arange(*c)``."""
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
    zoomed = scipy_zoom(img[top : top + ch, left : left + cw], (factor, factor, 1), order=1)
    top, left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[top : top + h, left : left + w]


def snow(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Motion-blurred flakes over a greyed, brightened image (``c`` is laid out in the registry)."""
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


def frost(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """A random crop of a frost picture blended in: ``c[0] * image + c[1] * frost``."""
    h, w = x.shape[:2]
    index = rng.randint(5)  # the reference picks among the first 5 of the 6 frost pictures
    picture = _frost_picture(index, 0.2 * max(h, w) / 32)  # 0.2 at 32 px, as in the reference
    top, left = rng.randint(0, picture.shape[0] - h), rng.randint(0, picture.shape[1] - w)
    crop = picture[top : top + h, left : left + w, ::-1]  # BGR -> RGB
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


def fog(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Diamond-square plasma fog of strength ``c[0]``; ``c[1]`` is how fast its roughness decays."""
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


def spatter(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """Water drops (``c[5] == 0``) or mud (``c[5] == 1``) from a blurred, thresholded noise layer."""
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


def contrast(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """Deviations from the channel means scaled by ``c``."""
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def brightness(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """``c`` added to the HSV value."""
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def saturate(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """HSV saturation times ``c[0]`` plus ``c[1]``."""
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def jpeg_compression(x: np.ndarray, c: int, rng: np.random.RandomState) -> np.ndarray:
    """A JPEG round trip at quality ``c``."""
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=c)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def pixelate(x: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """A box downscale by ``c`` and a box upscale back."""
    h, w = x.shape[:2]
    small = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


def elastic_transform(x: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    """A random affine jitter, then a smooth random displacement field (``c``: fractions of the short side)."""
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

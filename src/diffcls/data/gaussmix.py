"""``gaussmix``: a generated data set whose Bayes posterior is known exactly.

Every class c has a template μ_c, a smooth random gray image; an image of class c is μ_c plus independent Gaussian
noise of standard deviation σ per pixel, rounded to the nearest integer and clipped to 0..255, so it is an
ordinary uint8 image that every transform, corruption and model of the library takes. Classes are equally likely.
Because the rounding and clipping are part of the generator, the class-conditional likelihood of an image is a
product over pixels of the probability that N(μ_c, σ²) falls in that pixel value's bin:

    P(v | c) = Φ((v + ½ − μ) / σ) − Φ((v − ½ − μ) / σ),   with the bins of 0 and 255 open to −∞ and +∞,

and the posterior p(c | x) = softmax_c Σ_pixels log P(x_pixel | μ_c,pixel) is exact (:meth:`GaussMix.posterior`),
up to float64 rounding. Evaluations on clean, full-resolution ``gaussmix`` images therefore report how far a
model's probabilities are from the truth (``kl_to_bayes``) and what the best possible classifier scores
(``bayes_top1``, ``bayes_nll``).

The spec takes options after a colon: ``gaussmix:classes=10,noise=0.8,seed=0`` (see :data:`OPTIONS`). Templates
are 4×4 Gaussian grids upsampled bilinearly to ``size``×``size`` and scaled to an RMS of ``AMPLITUDE`` gray levels
around 128; σ = ``noise`` × ``NOISE_UNIT`` gray levels. With the defaults (10 classes, 16 px, noise 0.8) the
Bayes classifier errs on about a fifth of the images, so there is uncertainty for a model to get right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffcls.data.sources import DataKind, DataSource, Split, register_data_kind
from diffcls.errors import DiffclsError

AMPLITUDE = 8.0  # RMS of a template around 128, in gray levels
NOISE_UNIT = 64.0  # gray levels per unit of the ``noise`` option
GRID = 4  # templates are GRID×GRID random grids, upsampled: smooth, image-like patterns

# option: (type, default, smallest, largest, what it sets)
OPTIONS = {
    "classes": (int, 10, 2, 100, "number of classes"),
    "noise": (float, 0.8, 0.05, 4.0, f"noise standard deviation in units of {NOISE_UNIT:g} gray levels"),
    "size": (int, 16, 4, 64, "image side in pixels"),
    "train": (int, 5000, 10, 1_000_000, "training images"),
    "test": (int, 1000, 10, 1_000_000, "test images"),
    "seed": (int, 0, 0, 2**31 - 1, "seed of the templates and the images"),
}


@dataclass(frozen=True)
class GaussMix:
    """The generator: class templates ``means`` float64[K, H, W] (gray levels) and noise ``sigma``."""

    means: np.ndarray
    sigma: float

    @classmethod
    def make(cls, classes: int, noise: float, size: int, seed: int) -> GaussMix:
        rng = np.random.default_rng([seed, 0])
        grids = torch.as_tensor(rng.standard_normal((classes, 1, GRID, GRID)))
        smooth = torch.nn.functional.interpolate(grids, size=(size, size), mode="bilinear", align_corners=True)
        smooth = smooth[:, 0].numpy()
        smooth -= smooth.mean(axis=(1, 2), keepdims=True)
        smooth /= np.sqrt((smooth**2).mean(axis=(1, 2), keepdims=True))
        return cls(means=128.0 + AMPLITUDE * smooth, sigma=noise * NOISE_UNIT)

    @property
    def num_classes(self) -> int:
        return len(self.means)

    def sample(self, n: int, rng: np.random.Generator) -> Split:
        """``n`` images, classes balanced (``n // K`` each, the remainder to the first classes), shuffled."""
        labels = np.resize(np.arange(self.num_classes), n)
        rng.shuffle(labels)
        noisy = self.means[labels] + self.sigma * rng.standard_normal((n, *self.means.shape[1:]))
        images = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)[..., None]  # N×H×W×1
        return Split(images, labels.astype(np.int64))

    def log_likelihood(self, images: np.ndarray, chunk: int = 256) -> np.ndarray:
        """log P(x | c) of uint8 images ``[N, H, W(, 1)]`` under every class: float64[N, K]."""
        x = torch.as_tensor(np.asarray(images).reshape(len(images), -1), dtype=torch.float64)  # N×P
        means = torch.as_tensor(self.means.reshape(self.num_classes, -1))  # K×P
        out = []
        for start in range(0, len(x), chunk):
            v = x[start : start + chunk, None, :]  # n×1×P
            upper = torch.where(v >= 255, torch.inf, (v + 0.5 - means) / self.sigma)
            lower = torch.where(v <= 0, -torch.inf, (v - 0.5 - means) / self.sigma)
            out.append(_log_normal_mass(lower, upper).sum(dim=2))
        return torch.cat(out).numpy() if out else np.zeros((0, self.num_classes))

    def posterior(self, images: np.ndarray) -> np.ndarray:
        """The exact class posterior p(c | x) of uint8 images ``[N, H, W(, 1)]`` (equal priors): float64[N, K]."""
        return torch.softmax(torch.as_tensor(self.log_likelihood(images)), dim=1).numpy()


def _log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Φ(b) − Φ(a)) for a < b, accurate in both tails: mirrored to the lower tail, where log Φ is accurate."""
    flip = a > 0  # both bounds in the upper tail: Φ(b) − Φ(a) = Φ(−a) − Φ(−b)
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi))


def parse_options(text: str) -> dict:
    """``"classes=10,noise=0.8"`` as ``{"classes": 10, "noise": 0.8, ...}`` with the defaults filled in; an
    unknown option, a bad value or one out of range is a one-line error."""
    values = {name: spec[1] for name, spec in OPTIONS.items()}
    for item in filter(None, text.split(",")):
        name, _, raw = item.partition("=")
        if name not in OPTIONS:
            raise DiffclsError(f"unknown gaussmix option {name!r}; options: {', '.join(OPTIONS)}")
        kind, _, low, high, _ = OPTIONS[name]
        try:
            value = kind(raw)
        except ValueError:
            raise DiffclsError(f"gaussmix option {name} takes a {kind.__name__}, got {raw!r}") from None
        if not low <= value <= high:
            raise DiffclsError(f"gaussmix option {name} must lie in {low}..{high}, got {raw}")
        values[name] = value
    return values


def load_gaussmix(text: str = "") -> DataSource:
    """The ``gaussmix[:OPTIONS]`` spec: train and test images drawn from one generator (independent draws)."""
    o = parse_options(text)
    mix = GaussMix.make(o["classes"], o["noise"], o["size"], o["seed"])
    rng = np.random.default_rng([o["seed"], 1])
    train, test = mix.sample(o["train"], rng), mix.sample(o["test"], rng)
    return DataSource(
        name="gaussmix",
        train=train,
        test=test,
        class_names=[f"class {c}" for c in range(o["classes"])],
        native_size=(o["size"], o["size"]),
        channels=1,
        default_img_size=o["size"],
        meta={"options": o},
        posterior=mix.posterior,
    )


register_data_kind(
    DataKind(
        "gaussmix",
        load_gaussmix,
        takes_path=False,
        default_augment="none",  # augmenting would leave the distribution whose posterior is known
        help="generated class templates + Gaussian noise with an exact Bayes posterior; options after a colon, "
        "e.g. gaussmix:classes=10,noise=0.8,size=16,train=5000,test=1000,seed=0",
        takes_options=True,
    )
)

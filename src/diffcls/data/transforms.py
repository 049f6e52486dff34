"""Image transforms: channels to 3, fit to the model's size, low-resolution view, augmentation, normalisation.

All transforms act on torch tensors: input ``uint8[C, H, W]`` (C in 1, 3), output ``float32[3, S, S]``.
The low-resolution view (``low_res=S``) downsamples to S×S and resizes back to the model's input size: the
"low resolution" uncertainty of the DiDiCM paper, with the network's input size held fixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from diffcls.errors import DiffclsError, first_line

FitMode = Literal["auto", "resize", "pad"]
AugmentName = Literal["none", "crop", "crop-flip", "rrc-flip"]


@dataclass
class TransformConfig:
    """Everything needed to rebuild the eval transform of a trained model; stored in its ``config.json``."""

    img_size: int
    fit: FitMode = "auto"
    low_res: int | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformConfig:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


def to_three_channels(x: torch.Tensor) -> torch.Tensor:
    """``[1|3, H, W] -> [3, H, W]``: grayscale is repeated so every backbone sees RGB."""
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def fit_to_size(x: torch.Tensor, size: int, fit: FitMode = "auto") -> torch.Tensor:
    """Bring ``float[C, H, W]`` to ``[C, size, size]`` by zero-padding (centred) or bilinear resizing.

    ``auto`` pads when the image is at most 25% smaller than ``size`` on each side (28→32 px MNIST keeps its
    strokes crisp) and resizes otherwise (8 px digits, 224 px photographs).
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if fit == "auto":
        fit = "pad" if h <= size and w <= size and 4 * (size - min(h, w)) <= size else "resize"
    if fit == "pad":
        if h > size or w > size:
            raise DiffclsError(f"cannot pad a {h}×{w} image to {size}×{size}; use resizing instead")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top))
    return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def low_resolution(x: torch.Tensor, low_res: int) -> torch.Tensor:
    """``float[C, S, S] -> float[C, S, S]`` after a round trip through ``low_res × low_res`` (antialiased)."""
    size = x.shape[-2:]
    small = F.interpolate(x[None], size=(low_res, low_res), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)[0]


class ImageTransform:
    """uint8 ``[C, H, W]`` → normalised float ``[3, S, S]``, with optional training augmentation.

    Augmentations: ``crop`` (random translation by up to S/8 px, zero fill), ``crop-flip`` (plus horizontal flip),
    ``rrc-flip`` (RandomResizedCrop + flip, for photographs); then, as timm's training transform orders them,
    ``color_jitter`` (brightness, contrast and saturation of that strength) or ``rand_augment`` (timm's
    RandAugment, a config string such as ``rand-m7-mstd0.5-inc1``, applied to the uint8 image). Randomness comes
    from torch's and Python's global generators, which the training loop seeds per epoch so that runs (and
    resumed runs) repeat exactly.
    """

    def __init__(
        self,
        config: TransformConfig,
        augment: AugmentName = "none",
        rand_augment: str | None = None,
        color_jitter: float = 0.0,
    ):
        self.config = config
        s = config.img_size
        augs = {
            "none": [],
            "crop": [v2.RandomCrop(s, padding=max(1, s // 8))],
            "crop-flip": [v2.RandomCrop(s, padding=max(1, s // 8)), v2.RandomHorizontalFlip()],
            "rrc-flip": [v2.RandomResizedCrop(s, antialias=True), v2.RandomHorizontalFlip()],
        }
        if augment not in augs:
            raise DiffclsError(f"unknown augmentation {augment!r}; choose from {sorted(augs)}")
        steps = list(augs[augment])
        if rand_augment:
            steps.append(_RandAugment(rand_augment, s))
        elif color_jitter:
            steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
        self.augment = v2.Compose(steps) if steps else None
        self.normalize = v2.Normalize(config.mean, config.std)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = to_three_channels(image.float().div_(255.0))
        x = fit_to_size(x, self.config.img_size, self.config.fit)
        if self.config.low_res:
            x = low_resolution(x, self.config.low_res)
        if self.augment is not None:
            x = self.augment(x)
        return self.normalize(x)


class _RandAugment:
    """timm's RandAugment on a ``float[3, S, S]`` image in [0, 1]: it works on PIL images, so the image goes
    through uint8 and back (as in timm's own pipeline, where it runs before ToTensor)."""

    def __init__(self, config: str, img_size: int):
        from timm.data import rand_augment_transform

        try:
            # timm's hyper-parameters for its ImageNet pipeline: translation relative to the size, grey fill
            self.transform = rand_augment_transform(
                config, {"translate_const": int(img_size * 0.45), "img_mean": (128, 128, 128)}
            )
        except Exception as e:  # noqa: BLE001  (timm raises AssertionError, KeyError or ValueError on a bad string)
            reason = f": {first_line(e)}" if str(e) else ""
            raise DiffclsError(f"bad --rand-augment {config!r} (timm's syntax: rand-m7-mstd0.5-inc1){reason}") from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        image = v2.functional.to_pil_image(x.mul(255).round_().clamp_(0, 255).to(torch.uint8))
        return v2.functional.to_dtype(v2.functional.pil_to_tensor(self.transform(image)), torch.float32, scale=True)

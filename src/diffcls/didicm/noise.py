"""Noise schedules for the DiDiCM forward process.

A schedule maps diffusion time t in [0, 1] to the total noise sigma(t) and its
rate sigma'(t). The uniform process keeps a label with probability exp(-sigma(t)).
"""

from __future__ import annotations

import abc
import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Noise", "LogLinearNoise", "GeometricNoise", "NOISES", "get_noise"]


class Noise(abc.ABC):
    """Base schedule: ``noise(t) -> (sigma, dsigma)``, both with the shape of ``t``."""

    def __call__(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t)
        return self.total_noise(t), self.rate_noise(t)

    @abc.abstractmethod
    def total_noise(self, t: Tensor) -> Tensor:
        """sigma(t), the integrated rate."""

    @abc.abstractmethod
    def rate_noise(self, t: Tensor) -> Tensor:
        """sigma'(t) = d sigma / d t."""


class LogLinearNoise(Noise):
    """sigma(t) = -log(1 - (1 - eps) t), so exp(-sigma(t)) = 1 - (1 - eps) t.

    The keep-probability falls linearly from 1 to ``eps``; sigma(1) = -log(eps).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def total_noise(self, t: Tensor) -> Tensor:
        # log1p keeps sigma accurate down to t ~ 1e-8 (sigma ~ t).
        return -torch.log1p(-(1.0 - self.eps) * t)

    def rate_noise(self, t: Tensor) -> Tensor:
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)

    def __repr__(self) -> str:
        return f"LogLinearNoise(eps={self.eps})"


class GeometricNoise(Noise):
    """sigma(t) = sigma_min^(1-t) * sigma_max^t, sigma'(t) = sigma(t) log(sigma_max / sigma_min)."""

    def __init__(self, sigma_min: float = 1e-3, sigma_max: float = 1.0) -> None:
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self._log_min = math.log(sigma_min)
        self._log_ratio = math.log(sigma_max) - math.log(sigma_min)

    def total_noise(self, t: Tensor) -> Tensor:
        return torch.exp(self._log_min + t * self._log_ratio)

    def rate_noise(self, t: Tensor) -> Tensor:
        return self.total_noise(t) * self._log_ratio

    def __repr__(self) -> str:
        return f"GeometricNoise(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


NOISES: dict[str, type[Noise]] = {"loglinear": LogLinearNoise, "geometric": GeometricNoise}


def get_noise(name: Literal["loglinear", "geometric"] = "loglinear", **kwargs: float) -> Noise:
    """Build a schedule by name; ``kwargs`` go to its constructor.

    Example:
        >>> sigma, dsigma = get_noise("loglinear")(torch.tensor([0.5]))
    """
    if name not in NOISES:
        raise ValueError(f"unknown noise {name!r}; choose from {sorted(NOISES)}")
    return NOISES[name](**kwargs)

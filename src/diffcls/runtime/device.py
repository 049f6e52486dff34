"""Devices and seeding: the two facts every training and evaluation run starts from."""

from __future__ import annotations

import random

import numpy as np
import torch

from diffcls.errors import DiffclsError


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (numpy takes the seed modulo 2**32)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda[:N]``; CUDA asked for but absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DiffclsError(f"--device {name} requested but CUDA is not available")
    return torch.device(name)

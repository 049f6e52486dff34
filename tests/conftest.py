"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datafiles import write_npz

torch.set_num_threads(2)


@pytest.fixture
def npz_path(tmp_path: Path) -> Path:
    """A 4-class 12×12 grayscale npz data set (80 train / 20 test images)."""
    return write_npz(tmp_path / "blobs.npz")

"""Transforms: channels, fitting to size, low-resolution views, data-ratio subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcls.data import ImageTransform, TransformConfig, data_ratio_indices, fit_to_size, low_resolution
from diffcls.errors import DiffclsError


def test_pad_centres_28_to_32():
    x = torch.ones(1, 28, 28)
    y = fit_to_size(x, 32)
    assert y.shape == (1, 32, 32) and y.sum() == 28 * 28
    assert y[0, 2:30, 2:30].min() == 1 and y[0, :2].max() == 0


def test_resize_8_to_32_keeps_mean():
    x = torch.rand(1, 8, 8)
    y = fit_to_size(x, 32)
    assert y.shape == (1, 32, 32)
    assert torch.allclose(y.mean(), x.mean(), atol=0.03)


def test_low_resolution_removes_detail_but_keeps_size():
    x = torch.zeros(3, 32, 32)
    x[:, ::2] = 1.0  # one-pixel stripes: gone after a 8×8 round trip
    y = low_resolution(x, 8)
    assert y.shape == x.shape
    assert y.std() < 0.05 * x.std() and abs(y.mean() - 0.5) < 0.05
    assert torch.allclose(low_resolution(torch.full((3, 32, 32), 0.3), 8), torch.full((3, 32, 32), 0.3), atol=1e-6)


def test_image_transform_outputs_normalised_rgb():
    t = ImageTransform(TransformConfig(img_size=32))
    img = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    x = t(img)
    assert x.shape == (3, 32, 32) and x.max() == 1.0 and x.min() == -1.0  # pad is black = -1


def test_augmentation_is_random_but_seeded():
    t = ImageTransform(TransformConfig(img_size=16), augment="crop")
    img = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    a = [t(img) for _ in range(4)]
    torch.manual_seed(0)
    b = [t(img) for _ in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert any(not torch.equal(a[0], u) for u in a[1:])


def test_data_ratio_keeps_floor_per_class_at_least_one():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    idx = data_ratio_indices(labels, 0.25)
    assert np.bincount(labels[idx]).tolist() == [2, 1, 1]
    assert np.array_equal(idx, data_ratio_indices(labels, 0.25))  # fixed seed
    assert len(data_ratio_indices(labels, 1.0)) == 20
    with pytest.raises(DiffclsError):
        data_ratio_indices(labels, 0.0)

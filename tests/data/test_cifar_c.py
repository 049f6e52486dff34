"""The CIFAR-10-C port: the vectorised glass-blur shuffle against the reference's pixel loop."""

from __future__ import annotations

import numpy as np

from diffcls.data import cifar_c


def test_glass_blur_shuffle_matches_the_reference_pixel_loop():
    # make_cifar_c visits pixels from the bottom-right with offsets randint(-1, 1, 2) and "swaps" numpy views,
    # which copies the neighbour into (h, w); the vectorised version must give the same pixels from the same draws.
    for h, w in ((32, 32), (33, 40)):
        x = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected, draws = x.copy(), np.random.RandomState(9)
        for row in range(h - 1, 1, -1):
            for col in range(w - 1, 1, -1):
                dx, dy = draws.randint(-1, 1, size=(2,))
                expected[row, col], expected[row + dy, col + dx] = expected[row + dy, col + dx], expected[row, col]
        got = cifar_c._shuffle_pixels(x, 1, np.random.RandomState(9))
        np.testing.assert_array_equal(got, expected)
        assert (got != x).any()

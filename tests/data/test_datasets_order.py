"""The fixed stratified order that --limit, the bench's test subsets and the Diffusion Classifier draw from."""

from __future__ import annotations

import numpy as np

from diffcls.data import stratified_order


def test_every_prefix_is_stratified_and_the_order_is_fixed():
    labels = np.repeat(np.arange(10), [100] * 5 + [50] * 5)  # sorted by class, two class sizes
    order = stratified_order(labels)
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    np.testing.assert_array_equal(order, stratified_order(labels))  # fixed for a seed
    assert not np.array_equal(order, stratified_order(labels, seed=1))
    for n in (30, 150, 600):
        counts = np.bincount(labels[order[:n]], minlength=10)
        expected = n * np.bincount(labels) / len(labels)
        assert np.all(np.abs(counts - expected) <= 1), (n, counts)  # proportional to class sizes, within one


def test_first_images_of_a_sorted_split_are_not_one_class():
    labels = np.repeat(np.arange(4), 5)
    assert sorted(labels[stratified_order(labels)[:4]].tolist()) == [0, 1, 2, 3]

"""Data: spec strings → sources → datasets with transforms, subsets and low-resolution views."""

from diffcls.data.datasets import (
    ImageDataset,
    data_ratio_indices,
    limit_split,
    make_loader,
    stratified_order,
    subset_split,
    training_splits,
    validation_split,
)
from diffcls.data.gaussmix import GaussMix, load_gaussmix  # registers gaussmix
from diffcls.data.idx import load_fashion_mnist, load_idx_folder, read_idx  # registers idx: and fashion-mnist
from diffcls.data.sources import (
    DATA_KINDS,
    DataKind,
    DataSource,
    Split,
    data_spec_help,
    default_augment,
    load_source,
    read_image_file,
    register_data_kind,
)
from diffcls.data.transforms import ImageTransform, TransformConfig, fit_to_size, low_resolution

__all__ = [
    "DataSource",
    "Split",
    "default_augment",
    "load_source",
    "read_image_file",
    "ImageDataset",
    "data_ratio_indices",
    "subset_split",
    "limit_split",
    "validation_split",
    "training_splits",
    "stratified_order",
    "make_loader",
    "ImageTransform",
    "TransformConfig",
    "fit_to_size",
    "low_resolution",
    "DATA_KINDS",
    "DataKind",
    "register_data_kind",
    "data_spec_help",
    "read_idx",
    "GaussMix",
    "load_gaussmix",
    "load_idx_folder",
    "load_fashion_mnist",
]

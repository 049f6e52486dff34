"""Data: spec strings → sources → datasets with transforms, subsets and low-resolution views."""

from diffcls.data.datasets import ImageDataset, data_ratio_indices, make_loader, stratified_order, subset_split
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
]

"""Data: spec strings → sources → datasets with transforms, subsets and low-resolution views."""

from diffcls.data.datasets import ImageDataset, data_ratio_indices, make_loader, stratified_order, subset_split
from diffcls.data.sources import DataSource, Split, load_source, read_image_file
from diffcls.data.transforms import ImageTransform, TransformConfig, fit_to_size, low_resolution

__all__ = [
    "DataSource", "Split", "load_source", "read_image_file", "ImageDataset", "data_ratio_indices", "subset_split",
    "stratified_order",
    "make_loader", "ImageTransform", "TransformConfig", "fit_to_size", "low_resolution",
]

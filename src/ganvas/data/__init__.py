"""Image data: folders of pictures and built-in datasets as ``uint8 [N, C, H, W]`` arrays."""

from ganvas.data.builtin import BUILTIN_DATASETS
from ganvas.data.core import count_images, data_classes, load_images
from ganvas.data.imageset import ImageSet

__all__ = ["BUILTIN_DATASETS", "ImageSet", "count_images", "data_classes", "load_images"]

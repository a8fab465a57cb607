"""Annotated datasets for training and evaluation.

Every dataset is a sequence of :class:`Sample` (an image and its instance labels), so
training, evaluation and augmentation never care which layout the annotations came in.
"""

from .base import Sample, Subset
from .cellpose import CELL_MODEL_CHANNELS, CellposeFolder, cell_model_planes, training_folder
from .coco import CocoDataset, labels_to_coco
from .folders import ClassMaskFolders, ImageMaskFolder, ObjectMaskFolders
from .object_classes import ObjectClassCsv
from .rle import RleCsv, rle_decode, rle_encode

__all__ = [
    "CELL_MODEL_CHANNELS",
    "CellposeFolder",
    "ClassMaskFolders",
    "CocoDataset",
    "ImageMaskFolder",
    "ObjectClassCsv",
    "ObjectMaskFolders",
    "RleCsv",
    "Sample",
    "Subset",
    "cell_model_planes",
    "labels_to_coco",
    "rle_decode",
    "rle_encode",
    "training_folder",
]

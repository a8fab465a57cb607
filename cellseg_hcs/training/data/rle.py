"""Run-length encoding as Kaggle uses it, and the Sartorius-style RLE CSV dataset.

Kaggle's convention: pixels numbered from 1 in column-major order (down the first
column, then the next), the string ``"start length start length ..."``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...io.images import read_image
from .base import Sample


def rle_encode(mask: np.ndarray) -> str:
    """Kaggle RLE string of a binary mask (nonzero = object).

    Examples
    --------
    >>> rle_encode(np.array([[0, 1], [1, 1]]))
    '2 3'
    """
    pixels = (np.asarray(mask) > 0).ravel(order="F").astype(np.int8)
    padded = np.concatenate([[0], pixels, [0]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    changes[1::2] -= changes[::2]
    return " ".join(str(int(v)) for v in changes)


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Binary mask (bool, ``shape`` = (height, width)) from a Kaggle RLE string."""
    values = np.asarray(rle.split(), dtype=np.int64)
    if values.size % 2:
        raise ValueError(f"RLE string has an odd number of values: {rle[:40]!r}")
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    for start, length in zip(values[::2] - 1, values[1::2]):
        flat[start : start + length] = True
    return flat.reshape(shape, order="F")


class RleCsv(Sequence):
    """A CSV of one object per row (Kaggle Sartorius layout) with the images in a folder.

    Columns: ``id`` (the image file's stem) and ``annotation`` (RLE); ``height`` and
    ``width`` are used when present, else the image's shape. A ``class_column``
    (``cell_type`` in the Sartorius file) with two or more values gives every object its
    class (``Sample.classes``), in the order the values first appear (``class_names``).
    """

    def __init__(
        self, csv_file: str | Path, images: str | Path, class_column: str | None = "cell_type"
    ) -> None:
        self.csv_file = Path(csv_file)
        self.images_dir = Path(images)
        if not self.csv_file.is_file():
            raise InputError(f"{self.csv_file}: no such CSV file.")
        self.objects: dict[str, list[str]] = defaultdict(list)
        self.object_classes: dict[str, list[str]] = defaultdict(list)
        with self.csv_file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "annotation"} - set(reader.fieldnames or [])
            if missing:
                raise InputError(f"{self.csv_file}: missing column(s) {sorted(missing)}.")
            has_classes = class_column in (reader.fieldnames or [])
            for row in reader:
                self.objects[row["id"]].append(row["annotation"])
                if has_classes:
                    self.object_classes[row["id"]].append(row[class_column])
        names = tuple(dict.fromkeys(n for per in self.object_classes.values() for n in per))
        self.class_names = names if len(names) > 1 else None
        self.ids = sorted(self.objects)
        files = {p.stem: p for p in self.images_dir.iterdir()} if self.images_dir.is_dir() else {}
        missing_images = [i for i in self.ids if i not in files]
        if missing_images:
            raise InputError(f"{self.images_dir}: no image for id {missing_images[0]!r}.")
        self.files = {i: files[i] for i in self.ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.ids[index]
        image = read_image(self.files[image_id])
        labels = np.zeros(image.shape[:2], dtype=np.int32)
        for number, rle in enumerate(self.objects[image_id], start=1):
            labels[rle_decode(rle, labels.shape) & (labels == 0)] = number
        classes = None
        if self.class_names:
            classes = dict(enumerate(self.object_classes[image_id], start=1))
        return Sample(image, labels, image_id, classes)

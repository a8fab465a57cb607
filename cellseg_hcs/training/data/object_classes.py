"""A per-object class CSV beside instance masks: the class of each annotated object."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import Sample

#: The columns of a class CSV: the image (its file's stem), the object (its id in the
#: image's mask) and the object's class name.
COLUMNS = ("image", "object", "class")


class ObjectClassCsv(Sequence):
    """Samples of ``dataset`` with each object's class from a CSV (columns ``image``,
    ``object``, ``class``: one row per object), for training a class head.

    The class names are in the order they first appear in the file (``class_names``). An
    object without a row has no class: it is learned as foreground but not in the class
    loss. A row whose image is not in ``dataset``, or whose object is not in that image's
    mask, is refused with one sentence.

    Examples
    --------
    >>> data = ObjectClassCsv(ImageMaskFolder("images/", "masks/"), "classes.csv")
    ... # doctest: +SKIP
    >>> data.class_names  # doctest: +SKIP
    ('astrocyte', 'neuron')
    """

    def __init__(self, dataset: Sequence[Sample], csv_file: str | Path) -> None:
        self.dataset = dataset
        self.csv_file = Path(csv_file)
        if not self.csv_file.is_file():
            raise InputError(f"{self.csv_file}: no such CSV file.")
        self.classes: dict[str, dict[int, str]] = defaultdict(dict)
        with self.csv_file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{self.csv_file}: missing column(s) {', '.join(missing)} "
                    f"(it needs {', '.join(COLUMNS)})."
                )
            for line, row in enumerate(reader, start=2):
                try:
                    number = int(row["object"])
                except ValueError:
                    raise InputError(
                        f"{self.csv_file}, line {line}: object {row['object']!r} is not an "
                        "object id (a whole number)."
                    ) from None
                if number < 1 or not row["class"]:
                    raise InputError(
                        f"{self.csv_file}, line {line}: needs an object id of 1 or more and "
                        "a class name."
                    )
                self.classes[row["image"]][number] = row["class"]
        self.class_names = tuple(
            dict.fromkeys(name for per in self.classes.values() for name in per.values())
        )
        names = _sample_names(dataset)
        if names is not None:
            unknown = sorted(set(self.classes) - set(names))
            if unknown:
                raise InputError(
                    f"{self.csv_file}: image {unknown[0]!r} is not among the training "
                    f"images (the image column holds the file names without suffix)."
                )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        classes = self.classes.get(sample.name, {})
        present = set(np.unique(sample.labels).tolist())
        absent = sorted(set(classes) - present)
        if absent:
            raise InputError(
                f"{self.csv_file}: image {sample.name!r} has no object {absent[0]} in its mask."
            )
        return Sample(sample.image, sample.labels, sample.name, dict(classes))


def _sample_names(dataset: Sequence[Sample]) -> list[str] | None:
    """The sample names a folder dataset will give, without reading its images."""
    pairs = getattr(dataset, "pairs", None)
    return [Path(image).stem for image, _ in pairs] if pairs is not None else None

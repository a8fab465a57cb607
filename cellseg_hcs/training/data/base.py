"""The sample type all datasets yield."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    """One annotated image: ``image`` is YX (or CYX), ``labels`` YX integer instance ids.

    ``classes``: the class name of each object, by its id in ``labels``, for training a
    model with a class head (None: the objects have no classes).
    """

    image: np.ndarray
    labels: np.ndarray
    name: str = ""
    classes: dict[int, str] | None = None


class Subset(Sequence):
    """Some samples of a dataset, by index (a train/validation split of one folder)."""

    def __init__(self, dataset: Sequence[Sample], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[index]]

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The whole dataset's classes, in its order (None: it declares none)."""
        return getattr(self.dataset, "class_names", None)

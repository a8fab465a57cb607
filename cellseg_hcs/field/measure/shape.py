"""MeasureObjectSizeShape: area, perimeter, moments, convex hull, radii, Feret diameters."""

from __future__ import annotations

import numpy as np

from . import reference
from .objects import FieldObjects


def measure_shape(objects: FieldObjects, advanced: bool = False) -> dict[str, np.ndarray]:
    return reference.shape(objects, advanced)

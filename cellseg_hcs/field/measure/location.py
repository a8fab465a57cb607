"""The Identify modules' columns: each object's centre and number."""

from __future__ import annotations

import numpy as np

from .objects import FieldObjects


def measure_location(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``Location_Center_X/Y`` (the mean of the object's pixel coordinates) and the number."""
    return {
        "Location_Center_X": objects.mean(objects.cols.astype(np.float64)),
        "Location_Center_Y": objects.mean(objects.rows.astype(np.float64)),
        "Number_Object_Number": np.arange(1, objects.count + 1),
    }

"""The plate run: every field of an OME-Zarr HCS plate through dask into labels and tables."""

from .run import PlateRunResult, run_plate

__all__ = ["PlateRunResult", "run_plate"]

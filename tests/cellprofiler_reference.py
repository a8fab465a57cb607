"""Measure objects with CellProfiler 4.2.8 itself: run in .venv-cp by test_features_cellprofiler.

Usage: python cellprofiler_reference.py REQUEST.json

The request names the images (``{"images": {"DNA": "dna.tif", "Other": "other.tif"}}``,
measured in that order) and the cases (``"cases": [["labels.tif", "out.csv"], ...]``). For
each case this runs, headless and with CellProfiler's defaults unless said here:

- the Identify modules' location and number columns,
- MeasureObjectSizeShape (Zernike and advanced features on),
- MeasureObjectIntensity,
- MeasureTexture (scale 3, 256 gray levels, objects),
- MeasureObjectNeighbors (the objects as their own neighbours, expand until adjacent),
- MeasureGranularity (within the objects),
- MeasureObjectIntensityDistribution (4 scaled bins, Zernike magnitudes and phases),
- MeasureColocalization (within the objects),

on images loaded as NamesAndTypes loads them (integers divided by their dtype's maximum, with
that maximum as the image's scale), and writes every per-object measurement under its
ExportToSpreadsheet column name (``Nuclei_AreaShape_Area``). A case with no objects writes
the header alone.

Two things are adjusted, both outside CellProfiler's own code:

- CellProfiler 4.2.8 pins scikit-image 0.18, which has no wheel for this Python; the
  environment has a newer one, where ``erosion``, ``dilation`` and ``reconstruction`` call
  their structuring element ``footprint`` rather than ``selem`` (same meaning).
  MeasureGranularity still says ``selem``, so it is passed on under the new name.
- ``scipy.ndimage.maximum_position`` (the brightest pixel of MeasureObjectIntensity, the
  centre of MeasureObjectIntensityDistribution) picks among tied maxima by numpy's unstable
  sort, whose order of ties differs between numpy versions and processors, so CellProfiler
  itself gives different centres on different machines. It runs here with a stable sort:
  the same code, with ties going to the last in raster order, on every machine.
"""

from __future__ import annotations

import functools
import json
import sys

import numpy as np
import tifffile


def _accept_selem(function):
    @functools.wraps(function)
    def call(*args, selem=None, **kwargs):
        if selem is not None:
            kwargs["footprint"] = selem
        return function(*args, **kwargs)

    return call


def _stable_maximum_position(input, labels=None, index=None):
    """scipy's maximum_position for labelled inputs with a list of labels, stable sort."""
    if labels is None or index is None or np.isscalar(index):
        return _SCIPY_MAXIMUM_POSITION(input, labels, index)
    input = np.asarray(input)
    labels = np.broadcast_to(np.asarray(labels), input.shape).ravel()
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(input.ravel(), kind="stable")
    last = np.zeros(max(int(labels.max()), int(index.max())) + 2, np.int64)
    last[labels[order]] = order  # the last write wins: the last of the tied maxima
    found = last[index]
    dims = np.array(input.shape)
    dim_prod = np.cumprod([1] + list(dims[:0:-1]))[::-1]
    return [tuple(v) for v in (found.reshape(-1, 1) // dim_prod) % dims]


_SCIPY_MAXIMUM_POSITION = None


def start_cellprofiler() -> None:
    global _SCIPY_MAXIMUM_POSITION
    import cellprofiler_core.preferences as preferences

    preferences.set_headless()
    preferences.set_awt_headless(True)
    import matplotlib
    import matplotlib.cm
    import skimage.morphology

    if not hasattr(matplotlib.cm, "get_cmap"):  # CellProfiler 4.2.8 on matplotlib >= 3.9
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    import scipy.ndimage

    for name in ("erosion", "dilation", "reconstruction"):
        setattr(skimage.morphology, name, _accept_selem(getattr(skimage.morphology, name)))
    _SCIPY_MAXIMUM_POSITION = scipy.ndimage.maximum_position
    scipy.ndimage.maximum_position = _stable_maximum_position


def modules(image_names: list[str]) -> list:
    """The measurement modules, set up as the module docstring says."""
    from cellprofiler.modules.measurecolocalization import M_OBJECTS, MeasureColocalization
    from cellprofiler.modules.measuregranularity import MeasureGranularity
    from cellprofiler.modules.measureobjectintensity import MeasureObjectIntensity
    from cellprofiler.modules.measureobjectintensitydistribution import (
        Z_MAGNITUDES_AND_PHASE,
        MeasureObjectIntensityDistribution,
    )
    from cellprofiler.modules.measureobjectneighbors import MeasureObjectNeighbors
    from cellprofiler.modules.measureobjectsizeshape import MeasureObjectSizeShape
    from cellprofiler.modules.measuretexture import IO_OBJECTS, MeasureTexture

    shape = MeasureObjectSizeShape()
    shape.objects_list.value = "Nuclei"
    shape.calculate_zernikes.value = True
    shape.calculate_advanced.value = True
    intensity = MeasureObjectIntensity()
    intensity.images_list.value = ", ".join(image_names)
    intensity.objects_list.value = "Nuclei"
    texture = MeasureTexture()
    texture.images_list.value = ", ".join(image_names)
    texture.objects_list.value = "Nuclei"
    texture.gray_levels.value = 256
    texture.scale_groups[0].scale.value = 3
    texture.images_or_objects.value = IO_OBJECTS
    neighbors = MeasureObjectNeighbors()
    neighbors.object_name.value = "Nuclei"
    neighbors.neighbors_name.value = "Nuclei"
    neighbors.distance_method.value = "Expand until adjacent"
    neighbors.wants_count_image.value = False
    neighbors.wants_percent_touching_image.value = False
    granularity = MeasureGranularity()
    granularity.images_list.value = ", ".join(image_names)
    granularity.wants_objects.value = True
    granularity.objects_list.value = "Nuclei"
    distribution = MeasureObjectIntensityDistribution()
    distribution.images_list.value = ", ".join(image_names)
    distribution.objects[0].object_name.value = "Nuclei"
    distribution.wants_zernikes.value = Z_MAGNITUDES_AND_PHASE
    colocalization = MeasureColocalization()
    colocalization.images_list.value = ", ".join(image_names)
    colocalization.objects_list.value = "Nuclei"
    colocalization.images_or_objects.value = M_OBJECTS
    return [shape, intensity, texture, neighbors, granularity, distribution, colocalization]


def measure(images: dict[str, np.ndarray], labels: np.ndarray, out_path: str) -> None:
    """Measure one label image on the images; write the CSV."""
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import Objects, ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.utilities.core.module.identify import (
        add_object_location_measurements,
    )
    from cellprofiler_core.workspace import Workspace

    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    for name, pixels in images.items():
        scale = np.iinfo(pixels.dtype).max
        image_set.add(name, Image(pixels.astype(np.float64) / scale, convert=False, scale=scale))
    object_set = ObjectSet()
    objects = Objects()
    objects.segmented = labels
    object_set.add_objects(objects, "Nuclei")
    measurements = Measurements()
    add_object_location_measurements(measurements, "Nuclei", labels)
    pipeline = Pipeline()
    for number, module in enumerate(modules(list(images)), start=1):
        module.set_module_num(number)
        pipeline.add_module(module)
    for module in pipeline.modules():
        workspace = Workspace(pipeline, module, image_set, object_set, measurements, image_set_list)
        module.run(workspace)

    count = int(labels.max())
    columns = {}
    for feature in measurements.get_feature_names("Nuclei"):
        values = measurements.get_current_measurement("Nuclei", feature)
        if values is not None and len(values) == count:
            columns[f"Nuclei_{feature}"] = np.asarray(values, dtype=np.float64)
    names = sorted(columns)
    table = np.column_stack([columns[n] for n in names]) if count else np.zeros((0, len(names)))
    np.savetxt(out_path, table, delimiter=",", header=",".join(names), comments="")


def main(request_path: str) -> None:
    with open(request_path) as file:
        request = json.load(file)
    start_cellprofiler()
    images = {name: tifffile.imread(path) for name, path in request["images"].items()}
    for labels_path, out_path in request["cases"]:  # one start-up for all
        measure(images, tifffile.imread(labels_path).astype(np.int32), out_path)


if __name__ == "__main__":
    main(sys.argv[1])

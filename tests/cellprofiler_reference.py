"""Measure objects with CellProfiler 4.2.8 itself: run in .venv-cp by test_features_cellprofiler.

Usage: python cellprofiler_reference.py IMAGE.tif LABELS.tif OUT.csv [LABELS.tif OUT.csv ...]

Runs MeasureObjectSizeShape, MeasureObjectIntensity, MeasureTexture (scale 3, 256 levels)
and MeasureObjectNeighbors (expand until adjacent) headless on one image called ``DNA``
and objects called ``Nuclei``, the pixels scaled as CellProfiler loads a uint16 image
(divided by 65535), and writes every per-object measurement under its
ExportToSpreadsheet column name (``Nuclei_AreaShape_Area``).
"""

from __future__ import annotations

import sys

import numpy as np
import tifffile


def main(image_path: str, labels_path: str, out_path: str) -> None:
    """Measure one label image on one image; write the CSV."""
    import cellprofiler_core.preferences as preferences

    preferences.set_headless()
    preferences.set_awt_headless(True)
    import matplotlib
    import matplotlib.cm
    from cellprofiler.modules.measureobjectintensity import MeasureObjectIntensity
    from cellprofiler.modules.measureobjectneighbors import MeasureObjectNeighbors
    from cellprofiler.modules.measureobjectsizeshape import MeasureObjectSizeShape
    from cellprofiler.modules.measuretexture import IO_OBJECTS, MeasureTexture
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import Objects, ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    if not hasattr(matplotlib.cm, "get_cmap"):  # CellProfiler 4.2.8 on matplotlib >= 3.9
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap

    pixels = tifffile.imread(image_path)
    labels = tifffile.imread(labels_path).astype(np.int32)
    scaled = pixels.astype(np.float64) / np.iinfo(pixels.dtype).max

    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    image_set.add("DNA", Image(scaled, convert=False))
    object_set = ObjectSet()
    objects = Objects()
    objects.segmented = labels
    object_set.add_objects(objects, "Nuclei")
    measurements = Measurements()
    pipeline = Pipeline()

    shape = MeasureObjectSizeShape()
    shape.objects_list.value = "Nuclei"
    shape.calculate_zernikes.value = False
    shape.calculate_advanced.value = False
    intensity = MeasureObjectIntensity()
    intensity.images_list.value = "DNA"
    intensity.objects_list.value = "Nuclei"
    texture = MeasureTexture()
    texture.images_list.value = "DNA"
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

    for number, module in enumerate((shape, intensity, texture, neighbors), start=1):
        module.set_module_num(number)
        pipeline.add_module(module)
    for module in pipeline.modules():
        workspace = Workspace(pipeline, module, image_set, object_set, measurements, image_set_list)
        module.run(workspace)

    columns = {}
    for feature in measurements.get_feature_names("Nuclei"):
        values = measurements.get_current_measurement("Nuclei", feature)
        if values is not None and len(values) == labels.max():
            columns[f"Nuclei_{feature}"] = np.asarray(values, dtype=np.float64)
    names = sorted(columns)
    table = np.column_stack([columns[n] for n in names])
    np.savetxt(out_path, table, delimiter=",", header=",".join(names), comments="")


if __name__ == "__main__":
    image_file, *pairs = sys.argv[1:]
    for labels_file, out_file in zip(pairs[::2], pairs[1::2]):  # one start-up for all
        main(image_file, labels_file, out_file)

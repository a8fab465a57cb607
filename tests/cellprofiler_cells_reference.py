"""Grow cells with CellProfiler 4.2.8 itself: run in .venv-cp by test_cells_cellprofiler.

Usage: python cellprofiler_cells_reference.py OUT_FOLDER CASE [CASE ...]
where each CASE is ``NAME:IMAGE.tif:NUCLEI.tif:METHOD`` and METHOD is CellProfiler's name
(``Propagation``, ``Watershed - Image``, ``Distance - N``).

Runs IdentifySecondaryObjects with its default settings (only the method chosen) on the
image, scaled as CellProfiler loads an integer image (divided by its type's maximum), with
the given labels as the primary objects, then IdentifyTertiaryObjects with its defaults, and
writes ``NAME_cells.tif``, ``NAME_cytoplasm.tif`` and ``NAME_threshold.txt`` to OUT_FOLDER.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile


def main(out: Path, name: str, image_path: str, nuclei_path: str, method: str) -> None:
    """One case: the cells and cytoplasm CellProfiler makes, written as label TIFFs."""
    import cellprofiler_core.preferences as preferences

    preferences.set_headless()
    preferences.set_awt_headless(True)
    import matplotlib
    import matplotlib.cm
    from cellprofiler.modules.identifysecondaryobjects import IdentifySecondaryObjects
    from cellprofiler.modules.identifytertiaryobjects import IdentifyTertiaryObjects
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import Objects, ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    if not hasattr(matplotlib.cm, "get_cmap"):  # CellProfiler 4.2.8 on matplotlib >= 3.9
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap

    pixels = tifffile.imread(image_path)
    nuclei = tifffile.imread(nuclei_path).astype(np.int32)
    scaled = pixels.astype(np.float64) / np.iinfo(pixels.dtype).max

    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    image_set.add("CellStain", Image(scaled, convert=False))
    object_set = ObjectSet()
    objects = Objects()
    objects.segmented = nuclei
    object_set.add_objects(objects, "Nuclei")
    measurements = Measurements()
    pipeline = Pipeline()

    secondary = IdentifySecondaryObjects()
    secondary.x_name.value = "Nuclei"
    secondary.y_name.value = "Cells"
    secondary.image_name.value = "CellStain"
    secondary.method.value = method
    tertiary = IdentifyTertiaryObjects()
    tertiary.secondary_objects_name.value = "Cells"
    tertiary.primary_objects_name.value = "Nuclei"
    tertiary.subregion_objects_name.value = "Cytoplasm"
    for number, module in enumerate((secondary, tertiary), start=1):
        module.set_module_num(number)
        module.show_window = False
        pipeline.add_module(module)
    for module in pipeline.modules():
        workspace = Workspace(pipeline, module, image_set, object_set, measurements, image_set_list)
        module.run(workspace)

    cells = object_set.get_objects("Cells").segmented
    cytoplasm = object_set.get_objects("Cytoplasm").segmented
    tifffile.imwrite(out / f"{name}_cells.tif", cells.astype(np.int32))
    tifffile.imwrite(out / f"{name}_cytoplasm.tif", cytoplasm.astype(np.int32))
    threshold = (
        measurements.get_current_image_measurement("Threshold_FinalThreshold_Cells")
        if method != "Distance - N"
        else float("nan")
    )
    (out / f"{name}_threshold.txt").write_text(repr(float(threshold)))


if __name__ == "__main__":
    folder, *cases = sys.argv[1:]
    for case in cases:  # one start-up for all
        case_name, image_file, nuclei_file, method_name = case.split(":")
        main(Path(folder), case_name, image_file, nuclei_file, method_name)

"""Checks that run inside CellProfiler's own Python (.venv-cp), for test_cellprofiler_plugin.py.

Usage: ``.venv-cp/bin/python tests/cellprofiler_headless.py REQUEST.json``; prints one JSON
report on its last line. Everything here uses cellprofiler-core's own machinery: its plugin
loader, its pipeline reader and writer, and its module validation.
"""

from __future__ import annotations

import io
import json
import os
import sys

MODULE = "RunCellSegHCS"


def load_modules(plugins: str) -> dict:
    """Load CellProfiler's modules and the plugins the way CellProfiler does at start-up."""
    import cellprofiler_core.preferences as preferences

    preferences.set_headless()
    preferences.set_plugin_directory(plugins, globally=False)
    from cellprofiler_core.constants.modules import all_modules, badmodules
    from cellprofiler_core.utilities.core.modules import fill_modules

    fill_modules()
    loaded = all_modules.get(MODULE)
    return {
        "loaded": loaded is not None,
        "bad_modules": [str(name) for name, _ in badmodules],
        "heavy_imports_at_start": sorted(m for m in ("torch", "cellseg_hcs") if m in sys.modules),
        "category": getattr(loaded, "category", None),
        "classes": [cls.__name__ for cls in getattr(loaded, "__mro__", ())],
    }


def find_module(pipeline):
    return next(m for m in pipeline.modules() if m.module_name == MODULE)


def round_trip(pipeline_file: str) -> dict:
    """Change every RunCellSegHCS setting, save the pipeline as text, load it again."""
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    as_loaded = {s.text: s.value_text for s in module.settings()}  # the example: revision 1
    changed = {
        "Name the output object": "MyNuclei",
        "Model": "Model file",
        "Model file": "/models/my model.safetensors",
        "Built-in model name": "cells",
        "Where to run the model": "On a cellseg-hcs server",
        "Processor": "GPU",
        "Use cellseg-hcs's tile and batch sizes?": "No",
        "Tile size (pixels)": "768",
        "Tiles per batch": "16",
        "Use the model's own thresholds?": "No",
        "Probability threshold": "0.35",
        "Minimum object size (pixels)": "40",
        "Save the probability image?": "Yes",
        "Name the probability image": "NucleusProbability",
        "Object size": "Give the typical diameter",
        "Typical diameter (pixels)": "60.0",
        "Also grow each nucleus into its cell?": "Yes",
        "Select the cell stain image": "Actin",
        "Cell method": "Distance - N",
        "Name the cells": "MyCells",
        "Name the cytoplasm": "MyCytoplasm",
        "Also output the micronuclei?": "Yes",
        "Name the micronuclei": "MyMicronuclei",
        "Test-time flips": "8",
    }
    for setting in module.settings():
        if setting.text in changed:
            setting.value = changed[setting.text]
    saved = {s.text: s.value_text for s in module.settings()}
    text = io.StringIO()
    pipeline.dump(text)
    reloaded = Pipeline()
    reloaded.load(io.StringIO(text.getvalue()))
    again = find_module(reloaded)
    return {
        "changed": changed,
        "saved": saved,
        "loaded": {s.text: s.value_text for s in again.settings()},
        "revision": again.variable_revision_number,
        "options": again.options(),
        "as_loaded": as_loaded,
    }


def validation(pipeline_file: str, tmp: str) -> dict:
    """The validation message (or None) for settings a user can get wrong."""
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.setting import ValidationError

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    plugin = sys.modules[type(module).__module__]
    not_a_model = os.path.join(tmp, "weights.txt")
    open(not_a_model, "w").close()

    def module_with(**values):
        pipeline.load(pipeline_file)
        target = find_module(pipeline)
        for setting in target.settings():
            if setting.text in values:
                setting.value = values[setting.text]
        return target

    def message(**values) -> str | None:
        target = module_with(**values)
        try:
            target.test_valid(pipeline)
        except ValidationError as exc:
            return exc.message
        return None

    report = {
        "example": message(),
        "empty_builtin_name": message(**{"Built-in model name": " "}),
        "missing_model_file": message(
            **{"Model": "Model file", "Model file": os.path.join(tmp, "nope.safetensors")}
        ),
        "not_a_model_file": message(**{"Model": "Model file", "Model file": not_a_model}),
    }
    os.environ["CELLSEG_HCS_SERVER_FILE"] = os.path.join(tmp, "no-server.json")
    report["server_not_running"] = message(**{"Where to run the model": "On a cellseg-hcs server"})
    report["automatic_uses_server_when_installed"] = module_with().uses_server()
    installed = plugin._cellseg_hcs_installed
    plugin._cellseg_hcs_installed = lambda: False
    try:
        report["in_process_not_installed"] = message(
            **{"Where to run the model": "In CellProfiler's Python"}
        )
        report["automatic_not_installed_no_server"] = message()
        report["automatic_uses_server_when_not_installed"] = module_with().uses_server()
    finally:
        plugin._cellseg_hcs_installed = installed
    # A revision 2 pipeline saved with the diameter given keeps it; without, its own scale.
    values = [s.value_text for s in module.settings()]
    added = 8  # settings revisions 3, 4, 5 and 6 added after the diameter's two
    for given in ("Yes", "No"):
        old = values[: -2 - added] + [given, "45.0"]
        upgraded, revision = module.upgrade_settings(old, 2, MODULE)
        report[f"revision_2_diameter_{given}"] = [
            upgraded[-2 - added],
            upgraded[-1 - added],
            revision,
        ]
    report["revision_3_cells"] = module.upgrade_settings(values[:-8], 3, MODULE)[0][-8:-1]
    report["revision_4_micronuclei"] = module.upgrade_settings(values[:-3], 4, MODULE)[0][-3:-1]
    report["revision_5_flips"] = module.upgrade_settings(values[:-1], 5, MODULE)[0][-1:]
    report["same_image_for_cells"] = message(
        **{
            "Also grow each nucleus into its cell?": "Yes",
            "Select the cell stain image": module.x_name.value,
        }
    )
    fresh = type(module)()  # as added to a new pipeline
    report["new_module_object_size"] = fresh.object_size.value
    report["new_module_options_diameter"] = fresh.options().get("diameter")
    report["example_options"] = module_with().options()  # a revision 1 pipeline, upgraded
    try:
        module.upgrade_settings([], module.variable_revision_number + 1, MODULE)
        report["newer_revision"] = None
    except ValueError as exc:
        report["newer_revision"] = str(exc)
    return report


def server_refusal(connection_file: str) -> str | None:
    """The error the plugin raises when the server refuses it (e.g. a wrong token)."""
    import numpy
    from cellprofiler_core.constants.modules import all_modules

    plugin = sys.modules[all_modules[MODULE].__module__]
    os.environ["CELLSEG_HCS_SERVER_FILE"] = connection_file
    try:
        plugin._segment_on_server(numpy.zeros((64, 64), numpy.float32), {"model": "nuclei"})
    except RuntimeError as exc:
        return str(exc)
    return None


def run_module(module, pipeline, raw):
    """Run the module on one image set holding ``raw`` (scaled to 0..1 as CellProfiler does)."""
    import numpy
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import ObjectSet
    from cellprofiler_core.workspace import Workspace

    image_sets = ImageSetList()
    image_set = image_sets.get_image_set(0)
    image_set.add("DNA", Image(raw / numpy.iinfo(raw.dtype).max))
    objects = ObjectSet()
    module.run(Workspace(pipeline, module, image_set, objects, Measurements(), image_sets))
    return image_set, objects


def probability_image(pipeline_file: str, image_file: str) -> dict:
    """Run the module in-process on one image set with the probability image switched on."""
    import numpy
    import tifffile
    from cellprofiler_core.pipeline import Pipeline

    import cellseg_hcs

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    module.save_probabilities.value = True
    module.probability_image_name.value = "NucleusProbability"
    raw = tifffile.imread(image_file)
    plugin = sys.modules[type(module).__module__]
    image_set, objects = run_module(module, pipeline, raw)
    segmenter = plugin._SEGMENTER
    run_module(module, pipeline, raw)  # a second image set
    probability = image_set.get_image("NucleusProbability").pixel_data
    expected = cellseg_hcs.load_model("nuclei").predict_maps(raw)[0]
    return {
        "shape": list(probability.shape),
        "image_shape": list(raw.shape),
        "max_difference": float(numpy.abs(probability - expected).max()),
        "objects": int(objects.get_objects(module.y_name.value).count),
        "segmenter_kept": segmenter is not None and plugin._SEGMENTER is segmenter,
        "models_loaded": len(segmenter._models),
    }


def broken_install(pipeline_file: str, image_file: str, connection_file: str) -> dict:
    """cellseg_hcs installed but failing to import: Automatic falls back to a running server,
    an explicit in-process choice says what is wrong."""
    import tifffile
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    plugin = sys.modules[type(module).__module__]
    os.environ["CELLSEG_HCS_SERVER_FILE"] = connection_file
    raw = tifffile.imread(image_file)

    def broken():
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    working, plugin._in_process_segmenter = plugin._in_process_segmenter, broken
    try:
        _, objects = run_module(module, pipeline, raw)
        report = {"automatic_objects": int(objects.get_objects(module.y_name.value).count)}
        module.run_mode.value = "In CellProfiler's Python"
        try:
            run_module(module, pipeline, raw)
            report["in_process_error"] = None
        except RuntimeError as exc:
            report["in_process_error"] = str(exc)
    finally:
        plugin._in_process_segmenter = working
    return report


def forced_server(pipeline_file: str, image_file: str, connection_file: str) -> int:
    """Objects found with *On a cellseg-hcs server* chosen where cellseg_hcs is installed."""
    import tifffile
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    module.run_mode.value = "On a cellseg-hcs server"
    os.environ["CELLSEG_HCS_SERVER_FILE"] = connection_file
    plugin = sys.modules[type(module).__module__]

    def not_here():
        raise AssertionError("the module ran the model in-process although told to use the server")

    working, plugin._in_process_segmenter = plugin._in_process_segmenter, not_here
    try:
        _, objects = run_module(module, pipeline, tifffile.imread(image_file))
    finally:
        plugin._in_process_segmenter = working
    return int(objects.get_objects(module.y_name.value).count)


def cells_in_process(pipeline_file: str, dna_file: str, stain_file: str) -> dict:
    """The module with cells on, in-process: three object sets and their relationships."""
    import numpy
    import tifffile
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    module.output_cells.value = True
    module.cell_image.value = "Actin"
    module.cells_method.value = "Propagation"
    image_sets = ImageSetList()
    image_set = image_sets.get_image_set(0)
    for name, path in (("DNA", dna_file), ("Actin", stain_file)):
        raw = tifffile.imread(path)
        image_set.add(name, Image(raw / numpy.iinfo(raw.dtype).max))
    objects, measurements = ObjectSet(), Measurements()
    module.run(Workspace(pipeline, module, image_set, objects, measurements, image_sets))
    nuclei = objects.get_objects(module.y_name.value)
    cells = objects.get_objects("Cells")
    cytoplasm = objects.get_objects("Cytoplasm")
    inside = cells.segmented[nuclei.segmented > 0] == nuclei.segmented[nuclei.segmented > 0]
    columns = module.get_measurement_columns(pipeline)
    return {
        "counts": [nuclei.count, cells.count, cytoplasm.count],
        "nuclei_inside_their_cells": bool(inside.all()),
        "parents": measurements.get_measurement("Cells", "Parent_Nuclei").tolist()[:3],
        "children": measurements.get_measurement("Nuclei", "Children_Cells_Count").tolist()[:3],
        "image_count": float(measurements.get_measurement("Image", "Count_Cytoplasm")),
        "columns_declared": sorted(
            f"{obj}|{name}" for obj, name, _ in columns if obj in ("Cells", "Cytoplasm")
        ),
    }


def micronuclei_in_process(pipeline_file: str, dna_file: str) -> dict:
    """The module with micronuclei on, in-process, with a stand-in segmenter that returns
    two nuclei and three micronuclei (two of nucleus 1, one of none); then with a model
    that makes no micronuclei."""
    import numpy
    import tifffile
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    pipeline = Pipeline()
    pipeline.load(pipeline_file)
    module = find_module(pipeline)
    module.output_micronuclei.value = True
    module.run_mode.value = "In CellProfiler's Python"
    plugin = sys.modules[type(module).__module__]
    raw = tifffile.imread(dna_file)
    nuclei = numpy.zeros(raw.shape, numpy.int32)
    nuclei[10:30, 10:30], nuclei[50:70, 50:70] = 1, 2
    micronuclei = numpy.zeros(raw.shape, numpy.int32)
    micronuclei[32:35, 12:15], micronuclei[12:15, 32:35], micronuclei[90:93, 90:93] = 1, 2, 3

    class StandIn:
        def __init__(self, with_micronuclei):
            self.with_micronuclei = with_micronuclei

        def segment(self, pixels, settings):
            out = {"labels": nuclei}
            if self.with_micronuclei:
                out["micronuclei"] = micronuclei
                out["micronuclei_parents"] = numpy.array([1, 1, 0], numpy.int32)
            return out

    real = plugin._in_process_segmenter
    report = {}
    try:
        plugin._in_process_segmenter = lambda: StandIn(True)
        image_sets = ImageSetList()
        image_set = image_sets.get_image_set(0)
        image_set.add("DNA", Image(raw / numpy.iinfo(raw.dtype).max))
        objects, measurements = ObjectSet(), Measurements()
        module.run(Workspace(pipeline, module, image_set, objects, measurements, image_sets))
        report["count"] = objects.get_objects("Micronuclei").count
        report["parents"] = measurements.get_measurement(
            "Micronuclei", f"Parent_{module.y_name.value}"
        ).tolist()
        report["children"] = measurements.get_measurement(
            module.y_name.value, "Children_Micronuclei_Count"
        ).tolist()
        report["image_count"] = float(measurements.get_measurement("Image", "Count_Micronuclei"))
        report["relationships_declared"] = [
            list(item[:3]) for item in module.get_object_relationships(pipeline)
        ]
        report["relationships"] = []
        for group in measurements.get_relationship_groups():
            related = measurements.get_relationships(
                group.module_number, group.relationship, group.object_name1, group.object_name2
            )
            report["relationships"].append(
                [
                    group.relationship,
                    group.object_name1,
                    group.object_name2,
                    related["ObjectNumber_First"].tolist(),
                    related["ObjectNumber_Second"].tolist(),
                ]
            )
        columns = module.get_measurement_columns(pipeline)
        report["columns_declared"] = sorted(
            f"{obj}|{name}" for obj, name, _ in columns if "Micronuclei" in f"{obj}|{name}"
        )
        plugin._in_process_segmenter = lambda: StandIn(False)
        try:
            run_module(module, pipeline, raw)
            report["without"] = None
        except ValueError as exc:
            report["without"] = str(exc)
    finally:
        plugin._in_process_segmenter = real
    return report


def main(request_file: str) -> None:
    request = json.loads(open(request_file).read())
    report = {"loader": load_modules(request["plugins"])}
    report["round_trip"] = round_trip(request["pipeline"])
    report["validation"] = validation(request["pipeline"], request["tmp"])
    report["probability_image"] = probability_image(request["pipeline"], request["image"])
    report["forced_server"] = forced_server(
        request["pipeline"], request["image"], request["server_file"]
    )
    report["broken_install"] = broken_install(
        request["pipeline"], request["image"], request["server_file"]
    )
    if request.get("cells"):
        report["cells"] = cells_in_process(request["pipeline"], *request["cells"])
        report["micronuclei"] = micronuclei_in_process(request["pipeline"], request["cells"][0])
    if request.get("wrong_token_file"):
        report["wrong_token"] = server_refusal(request["wrong_token_file"])
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])

"""
RunCellSegHCS
=============

**RunCellSegHCS** finds nuclei (or cells) with a cellseg-hcs deep-learning model, where
**IdentifyPrimaryObjects** or **RunCellpose** would otherwise stand. Its objects feed the
measurement modules as usual.

The model runs in one of two places, chosen automatically:

-  *In CellProfiler's Python*, when the ``cellseg_hcs`` package is installed there
   (``pip install cellseg-hcs`` into CellProfiler's environment). The model is loaded once per
   worker and kept for every image set.
-  *On a cellseg-hcs server*, otherwise: start ``cellseg-hcs serve`` from any Python where
   cellseg-hcs is installed, on the same computer. It keeps one model warm and answers every
   CellProfiler worker in turn, so several workers share one GPU. This module then needs
   nothing besides numpy and CellProfiler itself.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:** *Count*: the number of objects found.

**Object measurements:** *Location_Center_X/Y/Z* and *Number_Object_Number*.

See the cellseg-hcs documentation (docs/cellprofiler.md) for installation and the server.
"""

# Nothing heavy is imported here: CellProfiler imports and instantiates every plugin when it
# starts, in every worker. numpy and cellseg_hcs are imported when an image is segmented.
import importlib.util
import json
import os
import socket
import struct

from cellprofiler_core.module.image_segmentation import ImageSegmentation
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Float, ImageName, Integer, LabelName, Pathname, Text

__version__ = "1"

SOURCE_BUILTIN = "Built-in model"
SOURCE_FILE = "Model file"
MODE_AUTOMATIC = "Automatic"
MODE_IN_PROCESS = "In CellProfiler's Python"
MODE_SERVER = "On a cellseg-hcs server"
DEVICE_CHOICES = {"Automatic": "auto", "CPU": "cpu", "GPU": "cuda"}
SIZE_MEASURED = "Measure it in each image"
SIZE_GIVEN = "Give the typical diameter"
SIZE_NATIVE = "The image's own scale"
FLIPS_OWN = "The model's own"
#: The test-time flips choices: the label shown -> the flips cellseg-hcs is given (None: the
#: model's own, e.g. 8 for the micronuclei model, 1 for nuclei).
FLIPS_CHOICES = {FLIPS_OWN: None, "1 (fastest)": 1, "2": 2, "4": 4, "8": 8}
CELL_METHODS = {
    "Propagation": "propagation",
    "Watershed - Image": "watershed",
    "Distance - N": "distance",
}
# cellseg_hcs.settings.FieldSettings' defaults, repeated here because this file must work where
# cellseg_hcs cannot be imported; a test checks they agree.
DEFAULT_TILE_SIZE = 1024
DEFAULT_BATCH_SIZE = 4
DEFAULT_SIZE_CHOICE = SIZE_MEASURED  # FieldSettings' diameter "auto"

SERVER_FILE_ENV = "CELLSEG_HCS_SERVER_FILE"
# The wire format of cellseg_hcs/serve/protocol.py, repeated here because this file must work
# where cellseg_hcs cannot be imported. Tests run both against the real server.
_MAGIC = b"CSH1"
_PREFIX = struct.Struct(">4sI")
_MAX_HEADER_BYTES = 64 * 1024
_CONNECT_SECONDS = 10
_REPLY_SECONDS = 1800

# One in-process segmenter per CellProfiler worker process, kept across image sets.
_SEGMENTER = None


class RunCellSegHCS(ImageSegmentation):
    category = "Object Processing"
    module_name = "RunCellSegHCS"
    variable_revision_number = 6

    def create_settings(self):
        super().create_settings()
        self.y_name.value = "Nuclei"

        self.model_source = Choice(
            "Model",
            [SOURCE_BUILTIN, SOURCE_FILE],
            SOURCE_BUILTIN,
            doc="A model shipped with cellseg-hcs, or a *.safetensors* file written by "
            "``cellseg-hcs train``.",
        )
        self.builtin_model = Text(
            "Built-in model name",
            "nuclei",
            doc="Name of a model shipped with cellseg-hcs (``cellseg-hcs info`` lists them).",
        )
        self.model_file = Pathname(
            "Model file",
            "",
            wildcard="cellseg-hcs models (*.safetensors)|*.safetensors",
            doc="A *.safetensors* model file written by cellseg-hcs.",
        )
        self.run_mode = Choice(
            "Where to run the model",
            [MODE_AUTOMATIC, MODE_IN_PROCESS, MODE_SERVER],
            MODE_AUTOMATIC,
            doc=f"*{MODE_AUTOMATIC}*: in CellProfiler's Python when cellseg-hcs is installed "
            f"there, otherwise on a running ``cellseg-hcs serve``. *{MODE_SERVER}* needs the "
            "server on this computer; its connection file is read from "
            f"``${SERVER_FILE_ENV}`` or ``~/.cache/cellseg-hcs/serve.json``.",
        )
        self.device = Choice(
            "Processor",
            list(DEVICE_CHOICES),
            "Automatic",
            doc="*Automatic* uses a GPU when there is one (on a server: the server's choice).",
        )
        self.default_tiling = Binary(
            "Use cellseg-hcs's tile and batch sizes?",
            True,
            doc="*Yes* tiles large images as ``cellseg-hcs segment`` does (the same labels); "
            "*No* sets the tile size and the tiles run at once (GPU memory, speed).",
        )
        self.tile_size = Integer(
            "Tile size (pixels)",
            DEFAULT_TILE_SIZE,
            minval=256,
            maxval=8192,
            doc="Images larger than this are predicted in overlapping tiles.",
        )
        self.batch_size = Integer(
            "Tiles per batch",
            DEFAULT_BATCH_SIZE,
            minval=1,
            maxval=256,
            doc="Tiles run together; larger is faster on a GPU and needs more memory.",
        )
        self.use_model_thresholds = Binary(
            "Use the model's own thresholds?",
            True,
            doc="*Yes* keeps the probability threshold and minimum size tuned with the model.",
        )
        self.probability_threshold = Float(
            "Probability threshold",
            0.4,
            minval=0.01,
            maxval=0.99,
            doc="Pixels whose object probability is above this belong to objects (the "
            "shipped *nuclei* model's own value is 0.4).",
        )
        self.min_size = Integer(
            "Minimum object size (pixels)",
            16,
            minval=0,
            doc="Objects with fewer pixels than this are discarded.",
        )
        self.object_size = Choice(
            "Object size",
            [SIZE_MEASURED, SIZE_GIVEN, SIZE_NATIVE],
            SIZE_MEASURED,
            doc=f"The shipped *nuclei* model works best on nuclei about 30 pixels across. "
            f"*{SIZE_MEASURED}* (the default of ``cellseg-hcs segment``) measures the "
            "objects in a first pass and, only when they are far from that size (another "
            "objective or camera), runs the model again on the image resampled to it. "
            f"*{SIZE_GIVEN}* resamples each image so that objects of the diameter below "
            "reach that size (the ``--diameter`` of ``cellseg-hcs``). "
            f"*{SIZE_NATIVE}* never resamples (pipelines saved before this setting existed "
            "load with it). The objects always come back at the image's own size.",
        )
        self.diameter = Float(
            "Typical diameter (pixels)",
            30.0,
            minval=1.0,
            maxval=10000.0,
            doc="The typical diameter of the objects in this image, in pixels.",
        )
        self.save_probabilities = Binary(
            "Save the probability image?",
            False,
            doc="Also output the model's object probability (0 to 1) as an image.",
        )
        self.probability_image_name = ImageName(
            "Name the probability image",
            "ObjectProbability",
            doc="Name of the output probability image.",
        )
        self.output_cells = Binary(
            "Also grow each nucleus into its cell?",
            False,
            doc="Grow each object into its cell on a cell stain (cytoplasm, membrane or actin), "
            "as IdentifySecondaryObjects does, and take the cytoplasm (cell minus nucleus), as "
            "IdentifyTertiaryObjects does. Cell k, its cytoplasm and nucleus k are one cell. "
            "You can instead feed this module's nuclei to your own IdentifySecondaryObjects.",
        )
        self.cell_image = ImageSubscriber(
            "Select the cell stain image",
            "None",
            doc="The image the cells grow on; not the nuclei's image.",
        )
        self.cells_method = Choice(
            "Cell method",
            list(CELL_METHODS),
            "Propagation",
            doc="CellProfiler's IdentifySecondaryObjects methods, with its default settings "
            "(a Minimum Cross-Entropy threshold of the cell stain).",
        )
        self.cells_name = LabelName("Name the cells", "Cells", doc="Name of the cell objects.")
        self.cytoplasm_name = LabelName(
            "Name the cytoplasm", "Cytoplasm", doc="Name of the cytoplasm objects."
        )
        self.output_micronuclei = Binary(
            "Also output the micronuclei?",
            False,
            doc="For a model with a micronucleus class (its model card says so): output the "
            "micronuclei as an object set of their own, each with its parent nucleus "
            "(Parent_<nuclei>) and each nucleus with its count (Children_<micronuclei>_Count).",
        )
        self.micronuclei_name = LabelName(
            "Name the micronuclei", "Micronuclei", doc="Name of the micronucleus objects."
        )
        self.flips = Choice(
            "Test-time flips",
            list(FLIPS_CHOICES),
            FLIPS_OWN,
            doc="Average the model's maps over this many flips and rotations of each tile: "
            "N times the model's time, often cleaner small objects. *The model's own* uses "
            "the number the model was shipped with (its model card says which: 8 for "
            "*micronuclei*, 1 for *nuclei*); *1* is the fastest.",
        )

    def settings(self):
        return super().settings() + [
            self.model_source,
            self.builtin_model,
            self.model_file,
            self.run_mode,
            self.device,
            self.default_tiling,
            self.tile_size,
            self.batch_size,
            self.use_model_thresholds,
            self.probability_threshold,
            self.min_size,
            self.save_probabilities,
            self.probability_image_name,
            self.object_size,
            self.diameter,
            self.output_cells,
            self.cell_image,
            self.cells_method,
            self.cells_name,
            self.cytoplasm_name,
            self.output_micronuclei,
            self.micronuclei_name,
            self.flips,
        ]

    def visible_settings(self):
        visible = super().visible_settings() + [self.model_source]
        if self.model_source.value == SOURCE_BUILTIN:
            visible.append(self.builtin_model)
        else:
            visible.append(self.model_file)
        visible += [self.run_mode, self.device, self.flips, self.default_tiling]
        if not self.default_tiling.value:
            visible += [self.tile_size, self.batch_size]
        visible.append(self.object_size)
        if self.object_size.value == SIZE_GIVEN:
            visible.append(self.diameter)
        visible.append(self.use_model_thresholds)
        if not self.use_model_thresholds.value:
            visible += [self.probability_threshold, self.min_size]
        visible.append(self.save_probabilities)
        if self.save_probabilities.value:
            visible.append(self.probability_image_name)
        visible.append(self.output_cells)
        if self.output_cells.value:
            visible += [self.cell_image, self.cells_method, self.cells_name, self.cytoplasm_name]
        visible.append(self.output_micronuclei)
        if self.output_micronuclei.value:
            visible.append(self.micronuclei_name)
        return visible

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # One step per revision. Revision 2 added the diameter (off: the revision 1 behaviour);
        # revision 3 made its yes/no the object-size choice (no: the image's own scale);
        # revision 4 added the cells and cytoplasm (off); revision 5 the micronuclei (off);
        # revision 6 the test-time flips (the model's own, as before).
        if variable_revision_number == 1:
            setting_values = list(setting_values) + ["No", "30.0"]
            variable_revision_number = 2
        if variable_revision_number == 2:
            setting_values = list(setting_values)
            setting_values[-2] = SIZE_GIVEN if setting_values[-2] == "Yes" else SIZE_NATIVE
            variable_revision_number = 3
        if variable_revision_number == 3:  # revision 4 added the cells (off)
            setting_values = list(setting_values) + [
                "No",
                "None",
                "Propagation",
                "Cells",
                "Cytoplasm",
            ]
            variable_revision_number = 4
        if variable_revision_number == 4:  # revision 5 added the micronuclei (off)
            setting_values = list(setting_values) + ["No", "Micronuclei"]
            variable_revision_number = 5
        if variable_revision_number == 5:  # revision 6 added the flips (the model's own)
            setting_values = list(setting_values) + [FLIPS_OWN]
            variable_revision_number = 6
        if variable_revision_number > self.variable_revision_number:
            raise ValueError(
                f"This pipeline was saved by a newer RunCellSegHCS (settings revision "
                f"{variable_revision_number}); update the plugin to load it."
            )
        return setting_values, variable_revision_number

    def volumetric(self):
        return False

    # ------------------------------------------------------------ checks
    def model_name(self):
        """The model as cellseg-hcs names it: a built-in name or an absolute file path."""
        if self.model_source.value == SOURCE_BUILTIN:
            return self.builtin_model.value.strip()
        return os.path.abspath(os.path.expanduser(self.model_file.value))

    def validate_module(self, pipeline):
        if self.output_cells.value and self.cell_image.value == self.x_name.value:
            raise ValidationError(
                "The cell stain must be another image than the nuclei's: the cytoplasm, "
                "membrane or actin stain the cells grow on.",
                self.cell_image,
            )
        if self.model_source.value == SOURCE_BUILTIN and not self.builtin_model.value.strip():
            raise ValidationError(
                "Enter the name of a built-in model, for example 'nuclei'.", self.builtin_model
            )
        if self.model_source.value == SOURCE_FILE:
            if not self.model_file.value.lower().endswith(".safetensors"):
                raise ValidationError(
                    "The model file must be a .safetensors file written by cellseg-hcs.",
                    self.model_file,
                )
            if not os.path.isfile(self.model_name()):
                raise ValidationError(
                    f"The model file {self.model_name()} does not exist.", self.model_file
                )
        mode = self.run_mode.value
        if mode == MODE_IN_PROCESS and not _cellseg_hcs_installed():
            raise ValidationError(
                "cellseg-hcs is not installed in CellProfiler's Python: install it there "
                f"with pip, or choose '{MODE_SERVER}'.",
                self.run_mode,
            )
        if mode == MODE_SERVER or (mode == MODE_AUTOMATIC and not _cellseg_hcs_installed()):
            path = _server_file()
            if not os.path.isfile(path):
                raise ValidationError(
                    f"No cellseg-hcs server is running (no connection file at {path}): start "
                    "one with 'cellseg-hcs serve', or install cellseg-hcs in CellProfiler's "
                    "Python.",
                    self.run_mode,
                )

    # ------------------------------------------------------------ running
    def options(self):
        """The segmentation settings, as cellseg_hcs.settings.FieldSettings reads them."""
        options = {
            "model": self.model_name(),
            "device": DEVICE_CHOICES[self.device.value],
            "probabilities": bool(self.save_probabilities.value),
        }
        if FLIPS_CHOICES[self.flips.value] is not None:
            options["flips"] = FLIPS_CHOICES[self.flips.value]
        if not self.default_tiling.value:
            options["tile_size"] = int(self.tile_size.value)
            options["batch_size"] = int(self.batch_size.value)
        if not self.use_model_thresholds.value:
            options["foreground_threshold"] = float(self.probability_threshold.value)
            options["min_size"] = int(self.min_size.value)
        if self.object_size.value == SIZE_GIVEN:
            options["diameter"] = float(self.diameter.value)
        elif self.object_size.value == SIZE_MEASURED:
            options["diameter"] = "auto"
        if self.output_cells.value:  # the image sent holds the nuclei's, then the cell stain
            options["channel"] = 0
            options["cells"] = {"channel": 1, "method": CELL_METHODS[self.cells_method.value]}
        return options

    def extra_objects(self):
        """``(object name, result key, parent names)`` of the other object sets made."""
        nuclei, cells = self.y_name.value, self.cells_name.value
        extra = []
        if self.output_cells.value:
            extra += [
                (cells, "cells", [nuclei]),
                (self.cytoplasm_name.value, "cytoplasm", [cells, nuclei]),
            ]
        if self.output_micronuclei.value:
            extra.append((self.micronuclei_name.value, "micronuclei", [nuclei]))
        return extra

    def get_measurement_columns(self, pipeline, object_name=None):
        columns = super().get_measurement_columns(pipeline)
        for name, _, parents in self.extra_objects():
            columns += super().get_measurement_columns(pipeline, name)
            for parent in parents:
                columns.append((name, f"Parent_{parent}", "integer"))
                columns.append((parent, f"Children_{name}_Count", "integer"))
        return columns

    def get_object_relationships(self, pipeline):
        """Each extra object set's parent relationships, recorded every cycle."""
        from cellprofiler_core.constants.measurement import MCA_AVAILABLE_EACH_CYCLE

        return [
            ("Parent", parent, name, MCA_AVAILABLE_EACH_CYCLE)
            for name, _, parents in self.extra_objects()
            for parent in parents
        ]

    def get_categories(self, pipeline, object_name):
        categories = list(super().get_categories(pipeline, object_name))
        for name, _, parents in self.extra_objects():
            if object_name == name:
                categories += ["Location", "Number", "Parent"]
            if object_name in parents:
                categories.append("Children")
        return sorted(set(categories))

    def get_measurements(self, pipeline, object_name, category):
        found = list(super().get_measurements(pipeline, object_name, category))
        for name, _, parents in self.extra_objects():
            if object_name == "Image" and category == "Count":
                found.append(name)
            elif object_name == name:
                found += {
                    "Location": ["Center_X", "Center_Y", "Center_Z"],
                    "Number": ["Object_Number"],
                    "Parent": list(parents),
                }.get(category, [])
            elif object_name in parents and category == "Children":
                found.append(f"{name}_Count")
        return found

    def uses_server(self):
        """True when this run sends images to a cellseg-hcs server."""
        mode = self.run_mode.value
        return mode == MODE_SERVER or (mode == MODE_AUTOMATIC and not _cellseg_hcs_installed())

    def run(self, workspace):
        import numpy

        image = workspace.image_set.get_image(self.x_name.value)
        if image.volumetric:
            raise ValueError(
                f"RunCellSegHCS segments 2-D images; {self.x_name.value} is a 3-D image."
            )
        pixels = numpy.asarray(image.pixel_data, dtype=numpy.float32)
        if self.output_cells.value:
            stain = workspace.image_set.get_image(self.cell_image.value, must_be_grayscale=True)
            pixels = numpy.stack([pixels, numpy.asarray(stain.pixel_data, numpy.float32)])
        options = self.options()
        if self.uses_server():
            result = _segment_on_server(pixels, options)
        else:
            try:
                segmenter = _in_process_segmenter()
            except ImportError as exc:
                # Installed but broken (a torch that does not load, say): Automatic still
                # has the server, if one runs.
                if self.run_mode.value != MODE_AUTOMATIC or not os.path.isfile(_server_file()):
                    raise RuntimeError(
                        f"cellseg-hcs is installed in CellProfiler's Python but does not import "
                        f"({exc}); repair it, or run 'cellseg-hcs serve' and choose "
                        f"'{MODE_SERVER}'."
                    ) from exc
                result = _segment_on_server(pixels, options)
            else:
                from cellseg_hcs.settings import FieldSettings

                result = segmenter.segment(pixels, FieldSettings.from_mapping(options))

        from cellprofiler_core.image import Image
        from cellprofiler_core.object import Objects

        objects = Objects()
        objects.segmented = result["labels"].astype(numpy.int32)
        objects.parent_image = image
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        for name, key, parents in self.extra_objects():
            if key not in result:
                raise ValueError(
                    f"The model {self.model_name()} makes no {key}: choose a model with a "
                    f"micronucleus class, or answer No to 'Also output the {key}?'."
                )
            extra = Objects()
            extra.segmented = result[key].astype(numpy.int32)
            extra.parent_image = image
            workspace.object_set.add_objects(extra, name)
            self.add_measurements(workspace, name)
            for parent in parents:
                if key == "micronuclei":  # each micronucleus's nucleus (0: none near)
                    numbers = numpy.asarray(result["micronuclei_parents"], int)
                    counts = numpy.bincount(numbers, minlength=objects.count + 1)[1:]
                else:  # object k of each compartment set is one cell
                    numbers = numpy.arange(1, extra.count + 1)
                    counts = numpy.ones(extra.count, int)
                workspace.measurements.add_measurement(name, f"Parent_{parent}", numbers)
                workspace.measurements.add_measurement(
                    parent, f"Children_{name}_Count", counts[: objects.count]
                )
                # the relationship itself, as IdentifySecondaryObjects records it (exports
                # and RelateObjects read it): parent of each child that has one
                children = numpy.flatnonzero(numbers > 0) + 1
                images = numpy.full(children.size, workspace.measurements.image_set_number)
                workspace.measurements.add_relate_measurement(
                    self.module_num, "Parent", parent, name, images, numbers[numbers > 0],
                    images, children,
                )  # fmt: skip
        if self.save_probabilities.value:
            probability = Image(result["probabilities"], parent_image=image, convert=False)
            workspace.image_set.add(self.probability_image_name.value, probability)

        if self.show_window:
            workspace.display_data.x_data = image.pixel_data
            workspace.display_data.y_data = objects.segmented
            workspace.display_data.dimensions = image.dimensions


def _cellseg_hcs_installed():
    return importlib.util.find_spec("cellseg_hcs") is not None


def _server_file():
    override = os.environ.get(SERVER_FILE_ENV)
    if override:
        return os.path.expanduser(override)
    return os.path.join(os.path.expanduser("~"), ".cache", "cellseg-hcs", "serve.json")


def _in_process_segmenter():
    """This worker's segmenter (its models stay loaded across image sets)."""
    global _SEGMENTER
    if _SEGMENTER is None:
        from cellseg_hcs.serve import Segmenter

        _SEGMENTER = Segmenter()
    return _SEGMENTER


def _segment_on_server(pixels, options):
    """Labels (and probabilities) from the server named by the connection file."""
    path = _server_file()
    try:
        with open(path) as handle:
            details = json.load(handle)
        address, token = (details["host"], int(details["port"])), details["token"]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(
            f"Cannot read the cellseg-hcs server's connection file {path} ({exc}); "
            "is 'cellseg-hcs serve' running?"
        ) from exc
    if options.get("device") == "auto":
        options = {key: value for key, value in options.items() if key != "device"}
    header = {"token": token, "op": "segment", "options": options}
    try:
        sock = socket.create_connection(address, timeout=_CONNECT_SECONDS)
    except OSError as exc:
        raise RuntimeError(
            f"No cellseg-hcs server answers at {address[0]}:{address[1]} ({exc}); "
            "start one with 'cellseg-hcs serve'."
        ) from exc
    with sock:
        sock.settimeout(_REPLY_SECONDS)
        try:
            _send(sock, header, {"image": pixels})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading early; its reply says why
        reply, arrays = _receive(sock)
    if not reply.get("ok"):
        raise RuntimeError(f"The cellseg-hcs server refused the image: {reply.get('error')}")
    return arrays


def _send(sock, header, arrays):
    import numpy

    described, payloads = [], []
    for name, array in arrays.items():
        array = numpy.ascontiguousarray(array)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        described.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        payloads.append(memoryview(array).cast("B"))
    body = json.dumps({**header, "arrays": described}).encode()
    sock.sendall(_PREFIX.pack(_MAGIC, len(body)) + body)
    for payload in payloads:
        sock.sendall(payload)


def _receive(sock):
    import numpy

    magic, length = _PREFIX.unpack(_read(sock, _PREFIX.size))
    if magic != _MAGIC or length > _MAX_HEADER_BYTES:
        raise RuntimeError("The cellseg-hcs server sent a reply this plugin cannot read.")
    header = json.loads(_read(sock, length))
    arrays = {}
    for spec in header.get("arrays", []):
        dtype = numpy.dtype(spec["dtype"])
        count = int(numpy.prod(spec["shape"], dtype=numpy.int64))
        data = _read(sock, count * dtype.itemsize)
        arrays[spec["name"]] = numpy.frombuffer(data, dtype=dtype).reshape(spec["shape"])
    return header, arrays


def _read(sock, size):
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = sock.recv_into(view[done:], min(size - done, 1 << 20))
        if got == 0:
            raise RuntimeError("The cellseg-hcs server closed the connection mid-reply.")
        done += got
    return buffer

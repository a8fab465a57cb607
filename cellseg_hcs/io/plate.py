"""OME-Zarr HCS plates (NGFF 0.4 on zarr v2, NGFF 0.5 on zarr v3): fields in, labels out.

A plate is read from its metadata alone: the wells from the plate's ``plate`` block, the
fields from each well's ``well`` block, the channel names from a field's ``omero`` block and
the full-resolution array from the first dataset path of its ``multiscales`` (which need not
be called ``"0"``). Pixels are read only when a field is asked for, so a plate of any size
opens at once.

Label images are written per the NGFF labels spec: ``<field>/labels/<name>`` with the
image's axes less ``c``, one resolution level for each of the image's, integer dtype, and
``image-label`` metadata whose ``source`` points back at the image. A label image is written
under a temporary name and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .atomic import atomic_path

SPATIAL_PLANE = ("y", "x")


# ----------------------------------------------------------------------------- metadata


def ome_attrs(group) -> dict[str, Any]:
    """A group's NGFF metadata: the ``ome`` block in zarr v3 (NGFF 0.5), the attributes in v2."""
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", {})) if group.metadata.zarr_format == 3 else attrs


def ngff_format(zarr_format: int):
    """The ome-zarr-py ``Format`` that goes with a zarr format: 0.4 for v2, 0.5 for v3."""
    from ome_zarr.format import FormatV04, FormatV05

    return FormatV05() if zarr_format == 3 else FormatV04()


def well_name(row: str, column: str) -> str:
    """``B`` + ``3`` -> ``B03``: the row letter(s) and a two-digit column, as plates print them."""
    return f"{row}{column.zfill(2) if column.isdigit() else column}"


def split_well(text: str) -> tuple[str, str]:
    """A well as a user types it (``B3``, ``b03``, ``AF/48``) as its row and two-digit column.

    Examples
    --------
    >>> split_well("b3"), split_well("AF48")
    (('B', '03'), ('AF', '48'))
    """
    match = re.fullmatch(r"\s*([A-Za-z]+)\s*/?\s*([0-9]+|[A-Za-z0-9]+)\s*", text)
    if not match:
        raise ValueError(text)
    column = match.group(2)
    return match.group(1).upper(), column.zfill(2) if column.isdigit() else column


def parse_well(text: str) -> str:
    """A well as a user types it (``B3``, ``b03``, ``B/03``) in the form :func:`well_name` gives."""
    return well_name(*split_well(text))


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PlateField:
    """One field of view: where it is in the plate, and the names a table gives it."""

    plate: str
    """The plate's name (``Metadata_Plate``)."""
    well: str
    """``B03`` (``Metadata_Well``)."""
    site: int
    """Position of the field in its well's ``images`` list (``Metadata_Site``)."""
    path: str
    """Path of the field's image group inside the plate, e.g. ``B/03/0``."""

    @property
    def name(self) -> str:
        """``B03_0``: how files about this field are named."""
        return f"{self.well}_{self.site}"


@dataclass(frozen=True)
class Plate:
    """An opened HCS plate: its metadata and the list of its fields (no pixels yet)."""

    path: Path
    name: str
    ngff_version: str
    zarr_format: int
    fields: tuple[PlateField, ...]
    channel_names: tuple[str, ...]
    rows: tuple[str, ...] = ()
    """The row names of the plate's layout (``A``, ``B``...), as its metadata lists them."""
    columns: tuple[str, ...] = ()
    """The column names of the plate's layout (``01``, ``02``...), as its metadata lists them."""

    @property
    def wells(self) -> list[str]:
        return sorted({f.well for f in self.fields})

    def select(self, wells: list[str] | None) -> list[PlateField]:
        """The fields of the given wells (all fields when ``wells`` is None)."""
        if not wells:
            return list(self.fields)
        from ..errors import SettingError

        wanted = []
        for text in wells:
            try:
                wanted.append(parse_well(text))
            except ValueError:
                raise SettingError(f"{text!r} is not a well name (such as B03).") from None
        missing = [w for w in wanted if w not in self.wells]
        if missing:
            raise SettingError(
                f"well {missing[0]} is not in plate {self.path}; its wells are "
                f"{', '.join(self.wells[:12])}{' ...' if len(self.wells) > 12 else ''}."
            )
        return [f for f in self.fields if f.well in wanted]


def open_plate(path: str | Path) -> Plate:
    """Open an OME-Zarr HCS plate and list its fields, or say in one sentence why not.

    Examples
    --------
    >>> plate = open_plate("plate.zarr")  # doctest: +SKIP
    >>> plate.fields[0]  # doctest: +SKIP
    PlateField(plate='plate', well='B03', site=0, path='B/03/0')
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such plate (the path does not exist).")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:  # noqa: BLE001 - any failure to open means "not a zarr group"
        raise InputError(f"{path}: not an OME-Zarr plate (no zarr group there).") from None
    attrs = ome_attrs(root)
    plate = attrs.get("plate")
    if not isinstance(plate, dict) or not plate.get("wells"):
        raise InputError(f"{path}: not an OME-Zarr HCS plate (no 'plate' metadata with wells).")
    name = str(plate.get("name") or path.name.removesuffix(".zarr").removesuffix(".ome"))
    version = str(attrs.get("version") or plate.get("version") or "0.4")
    fields: list[PlateField] = []
    for well in plate["wells"]:
        well_path = str(well["path"]).strip("/")
        row, column = _row_and_column(plate, well, well_path)
        try:
            images = ome_attrs(root[well_path]).get("well", {}).get("images", [])
        except KeyError:
            raise InputError(f"{path}: well {well_path} is listed but missing.") from None
        for site, image in enumerate(images):
            fields.append(
                PlateField(
                    name,
                    well_name(row, column),
                    site,
                    f"{well_path}/{str(image['path']).strip('/')}",
                )
            )
    if not fields:
        raise InputError(f"{path}: the plate's wells list no fields.")
    channels = tuple(field_channel_names(root[fields[0].path]))
    return Plate(
        path,
        name,
        version,
        root.metadata.zarr_format,
        tuple(fields),
        channels,
        rows=_layout_names(plate, "rows"),
        columns=_layout_names(plate, "columns"),
    )


def _layout_names(plate: dict, key: str) -> tuple[str, ...]:
    try:
        return tuple(str(entry["name"]) for entry in plate.get(key) or [])
    except (KeyError, TypeError):
        return ()


def _row_and_column(plate: dict, well: dict, well_path: str) -> tuple[str, str]:
    try:
        return (
            str(plate["rows"][well["rowIndex"]]["name"]),
            str(plate["columns"][well["columnIndex"]]["name"]),
        )
    except (KeyError, IndexError, TypeError):
        row, _, column = well_path.partition("/")
        return row, column


def field_channel_names(image_group) -> list[str]:
    """Channel names from the field's ``omero`` block; ``C0``, ``C1``... where it has none."""
    attrs = ome_attrs(image_group)
    axes = _axes(attrs)
    array = image_group[_datasets(attrs)[0]["path"]]
    count = array.shape[axes.index("c")] if "c" in axes else 1
    channels = (attrs.get("omero") or {}).get("channels") or []
    names = [str(c.get("label") or "") for c in channels[:count]]
    names += [""] * (count - len(names))
    return [name or f"C{index}" for index, name in enumerate(names)]


def _datasets(attrs: dict) -> list[dict]:
    try:
        return list(attrs["multiscales"][0]["datasets"])
    except (KeyError, IndexError, TypeError):
        raise InputError("the field has no 'multiscales' metadata.") from None


def _axes(attrs: dict) -> list[str]:
    axes = attrs.get("multiscales", [{}])[0].get("axes")
    if not axes:
        return ["t", "c", "z", "y", "x"]  # NGFF 0.1-0.3 images are always 5-D
    return [a["name"] if isinstance(a, dict) else str(a) for a in axes]


@dataclass
class FieldImage:
    """A field's full-resolution pixels, one 2-D plane per channel, and its pyramid layout."""

    channels: dict[str, np.ndarray]
    axes: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    level_shapes: list[tuple[int, ...]]
    chunks: tuple[int, ...]
    zarr_format: int

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.channels.values())).shape


def read_field(
    plate_path: str | Path, field: PlateField, channels: list[str] | None = None
) -> FieldImage:
    """Read one field: the first time point, Z planes max-projected, channels by name.

    Only the full-resolution level is read, and only the channels asked for (all when
    ``channels`` is None).
    """
    import zarr

    group = zarr.open_group(str(Path(plate_path) / field.path), mode="r")
    attrs = ome_attrs(group)
    datasets = _datasets(attrs)
    names = field_channel_names(group)
    axes = _axes(attrs)
    array = group[datasets[0]["path"]]
    wanted = names if channels is None else channels
    planes = {}
    for name in wanted:
        if name not in names:
            raise InputError(f"channel {name!r} is not in this field (it has {', '.join(names)}).")
        index = tuple(
            names.index(name) if a == "c" else 0 if a == "t" else slice(None) for a in axes
        )
        plane = np.asarray(array[index])
        if "z" in axes and plane.ndim == 3:
            plane = plane.max(axis=0)
        planes[name] = plane
    axes_meta = attrs["multiscales"][0].get("axes") or [{"name": a} for a in axes]
    return FieldImage(
        channels=planes,
        axes=[a if isinstance(a, dict) else {"name": a} for a in axes_meta],
        datasets=datasets,
        level_shapes=[tuple(group[d["path"]].shape) for d in datasets],
        chunks=tuple(array.chunks),
        zarr_format=group.metadata.zarr_format,
    )


# ----------------------------------------------------------------------------- labels


PROVENANCE_KEY = "cellseg-hcs"
#: The label sets one run wrote into a field together (``["Nuclei", "Micronuclei"]``).
WRITTEN_WITH_KEY = "cellseg-hcs-written-with"


def labels_provenance(plate_path: str | Path, field: PlateField, name: str) -> dict | None:
    """What made the field's ``labels/<name>`` (model hash, scale), or None if unknown."""
    return _label_attribute(plate_path, field, name, PROVENANCE_KEY, dict) or None


def labels_written_with(plate_path: str | Path, field: PlateField, name: str) -> list[str]:
    """The label sets written into the field together with ``labels/<name>`` by one run
    (itself included), or [] when unknown (another tool, or an older cellseg-hcs)."""
    return _label_attribute(plate_path, field, name, WRITTEN_WITH_KEY, list)


def _label_attribute(plate_path, field: PlateField, name: str, key: str, kind: type):
    import zarr

    path = Path(plate_path) / field.path / "labels" / name
    if not path.is_dir():
        return kind()
    try:
        return kind(zarr.open_group(str(path), mode="r").attrs.get(key) or kind())
    except Exception:  # noqa: BLE001 - unreadable labels are simply not ours to trust
        return kind()


def remove_field_labels(plate_path: str | Path, field: PlateField, name: str) -> None:
    """Remove the field's ``labels/<name>`` and its entry in the labels list."""
    import zarr

    labels_dir = Path(plate_path) / field.path / "labels"
    shutil.rmtree(labels_dir / name, ignore_errors=True)
    group = zarr.open_group(str(labels_dir), mode="a")
    listed = list(ome_attrs(group).get("labels", []))
    if name in listed:
        _set_labels_list(group, [n for n in listed if n != name], group.metadata.zarr_format)


def write_field_labels(
    plate_path: str | Path,
    field: PlateField,
    name: str,
    labels: np.ndarray,
    image: FieldImage,
    provenance: dict[str, Any] | None = None,
    written_with: Sequence[str] = (),
) -> Path:
    """Write ``labels/<name>`` into a field, replacing an older one, atomically.

    The label pyramid has one level per image level, each the image level's shape without
    ``c``, made by nearest-neighbour sampling so every level holds only true label values.
    ``provenance`` (what made the labels: model hash, scale) is stored in the label group's
    attributes under ``cellseg-hcs``, so a later run can tell whether the labels are its own;
    ``written_with``, the label sets the run writes into the field together (under
    ``cellseg-hcs-written-with``), so a run that replaces them can remove those it no
    longer makes.
    """
    field_dir = Path(plate_path) / field.path
    labels_dir = field_dir / "labels"
    for stale in labels_dir.glob(f".{name}.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    target = labels_dir / name
    with atomic_path(target) as tmp:
        _write_label_image(tmp, labels, image, name)
        if provenance:
            import zarr

            attributes = zarr.open_group(str(tmp), mode="a").attrs
            attributes[PROVENANCE_KEY] = provenance
            if written_with:
                attributes[WRITTEN_WITH_KEY] = list(written_with)
    _list_label(labels_dir, name, image.zarr_format)
    return target


def _write_label_image(path: Path, labels: np.ndarray, image: FieldImage, name: str) -> None:
    import zarr
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

    fmt = ngff_format(image.zarr_format)
    keep = [i for i, axis in enumerate(image.axes) if axis["name"] != "c"]
    axes = [image.axes[i] for i in keep]
    names = [a["name"] for a in axes]
    group = zarr.open_group(str(path), mode="w", zarr_format=image.zarr_format)
    datasets = []
    for dataset, shape in zip(image.datasets, image.level_shapes):
        level_shape = tuple(shape[i] for i in keep)
        # A Z-stack's labels (made on its projection) are the same on every plane.
        level = np.broadcast_to(_resample_nearest(labels, level_shape[-2:]), level_shape)
        chunks = tuple(
            min(image.chunks[i], s) if image.axes[i]["name"] in SPATIAL_PLANE else 1
            for i, s in zip(keep, level_shape)
        )
        options: dict[str, Any] = {"chunks": chunks, "dtype": labels.dtype}
        if image.zarr_format == 3:
            options["dimension_names"] = names
        else:
            options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        array = group.create_array(dataset["path"], shape=level_shape, **options)
        array[...] = level
        transforms = [_drop_channel(t, keep) for t in dataset.get("coordinateTransformations", [])]
        datasets.append({"path": dataset["path"], "coordinateTransformations": transforms})
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=axes, name=name)
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    if fmt.version == "0.4":
        image_label["version"] = fmt.version
    add_metadata(group, {"image-label": image_label}, fmt=fmt)


def _resample_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if labels.shape == shape:
        return labels
    rows = (np.arange(shape[0]) * labels.shape[0]) // shape[0]
    cols = (np.arange(shape[1]) * labels.shape[1]) // shape[1]
    return labels[np.ix_(rows, cols)]


def _drop_channel(transform: dict, keep: list[int]) -> dict:
    out = dict(transform)
    for key in ("scale", "translation"):
        if key in out:
            out[key] = [out[key][i] for i in keep]
    return out


def _list_label(labels_dir: Path, name: str, zarr_format: int) -> None:
    """Add ``name`` to the ``labels`` list of the field's labels group (one task owns it)."""
    import zarr

    group = zarr.open_group(str(labels_dir), mode="a", zarr_format=zarr_format)
    listed = list(ome_attrs(group).get("labels", []))
    if name not in listed:
        _set_labels_list(group, [*listed, name], zarr_format)


def _set_labels_list(group, names: list[str], zarr_format: int) -> None:
    """Write the ``labels`` list of a field's labels group (NGFF metadata)."""
    from ome_zarr.writer import add_metadata

    fmt = ngff_format(zarr_format)
    metadata: dict[str, Any] = {"labels": names}
    if zarr_format == 3:
        metadata["version"] = fmt.version
    add_metadata(group, metadata, fmt=fmt)

"""Cells grown from their nuclei on a cell stain, and each cell's cytoplasm.

CellProfiler's IdentifySecondaryObjects and IdentifyTertiaryObjects, by their names and
defaults, on our nuclei::

    nuclei + cell stain --grow_cells--> Cells (cell k grows from nucleus k)
    nuclei + cell model's maps --cells_from_maps--> Cells
    Cells - Nuclei --cytoplasm--> Cytoplasm (numbered like its cell)

The methods (:data:`CELL_METHODS`):

- ``propagation`` (the default; CellProfiler's Propagation): each nucleus claims the pixels
  nearest to it, distance being measured along the image (crossing a bright ridge between
  two cells costs) and in the plane, weighted by ``regularization_factor``, inside the
  thresholded cell stain (:mod:`.threshold`);
- ``watershed`` (Watershed - Image): the inverted cell stain flooded from the nuclei, inside
  the threshold;
- ``distance`` (Distance - N): each nucleus grown by ``distance`` pixels, no image read;
- ``model``: a cell model's foreground split among the nuclei (:func:`cells_from_maps`).

Every method keeps the guarantees the rest of the package relies on: cell ``k`` grows from
nucleus ``k`` and contains it, every nucleus has exactly one cell (a nucleus with nothing to
grow into is its own cell, as in CellProfiler), no cell holds two nuclei, and cells never
overlap. Gaps in the nuclei's numbers are kept in the cells'.

Examples
--------
>>> nuclei = np.zeros((9, 20), np.uint16); nuclei[4, 4] = 1; nuclei[4, 15] = 2
>>> stain = np.zeros((9, 20), np.uint8); stain[1:8, 1:19] = 200
>>> cells = grow_cells(nuclei, stain, CellSettings())
>>> (cells[4, 1:19] == 1).sum(), (cells[4, 1:19] == 2).sum()
(np.int64(9), np.int64(9))
"""

from __future__ import annotations

from collections.abc import Callable

import centrosome.cpmorphology
import centrosome.propagate
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..errors import SettingError
from ..settings import CellSettings
from .measure import cellprofiler_scale
from .postprocess import fill_holes as fill_mask_holes
from .postprocess import label_dtype
from .threshold import foreground

BLANK_CELL_NOTE = "the cell channel is blank (one value everywhere): each cell is its nucleus"


# ----------------------------------------------------------------------------- methods


def _propagation(nuclei: np.ndarray, image: np.ndarray, settings: CellSettings) -> np.ndarray:
    mask, _ = foreground(image, settings.threshold)
    cells, _ = centrosome.propagate.propagate(
        image, nuclei, mask, float(settings.regularization_factor)
    )
    return cells


def _watershed_image(nuclei: np.ndarray, image: np.ndarray, settings: CellSettings) -> np.ndarray:
    mask, _ = foreground(image, settings.threshold)
    # The brightest pixels are flooded first, so neighbours meet on the dimmest line.
    return watershed(
        1 - image,
        markers=nuclei,
        mask=mask | (nuclei > 0),
        connectivity=np.ones((3, 3), bool),
    )


def _distance_n(nuclei: np.ndarray, image: np.ndarray, settings: CellSettings) -> np.ndarray:
    distances, (rows, cols) = ndi.distance_transform_edt(nuclei == 0, return_indices=True)
    cells = np.zeros(nuclei.shape, np.int32)
    near = distances <= settings.distance
    cells[near] = nuclei[rows[near], cols[near]]
    return cells


GrowMethod = Callable[[np.ndarray, np.ndarray, CellSettings], np.ndarray]

CELL_METHODS: dict[str, GrowMethod | None] = {
    "propagation": _propagation,
    "watershed": _watershed_image,
    "distance": _distance_n,
    "model": None,  # reads a cell model's maps, not the stain: cells_from_maps
}
"""The ways to grow cells, by name; each takes (nuclei int32, image 0..1 float, settings)."""


# ----------------------------------------------------------------------------- cells


def grow_cells(
    nuclei: np.ndarray,
    image: np.ndarray,
    settings: CellSettings | None = None,
    *,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Each nucleus grown into its cell on the raw cell stain ``image``.

    Parameters
    ----------
    nuclei:
        2-D labels, 0 = background; numbers may have gaps.
    image:
        The raw cell-stain plane (any real dtype); integers are scaled to 0..1 by their
        type's maximum, as CellProfiler loads them, before thresholding.
    settings:
        :class:`CellSettings` (default: CellProfiler's Propagation with its defaults).
    notes:
        A list that receives one sentence per thing a person should know about the field:
        a blank cell stain (one value everywhere) makes every cell its nucleus.

    Returns
    -------
    numpy.ndarray
        Cell labels of the nuclei's shape (uint16, or uint32 past 65535): cell ``k`` holds
        nucleus ``k``; no cell holds another nucleus's pixels.
    """
    settings = settings or CellSettings()
    grow = CELL_METHODS[settings.method]
    if grow is None:
        raise SettingError(
            f"cell method {settings.method!r} reads a cell model's maps: call cells_from_maps."
        )
    nuclei = _checked_nuclei(nuclei)
    image = np.asarray(image)
    if image.shape != nuclei.shape:
        raise SettingError(
            f"the cell channel has shape {image.shape}, but the nuclei have {nuclei.shape}."
        )
    if image.dtype.kind not in "uifb":
        raise SettingError(f"the cell channel has pixel type {image.dtype}, not a number.")
    if settings.method != "distance" and image.size and np.all(image == image.flat[0]):
        if notes is not None:
            notes.append(BLANK_CELL_NOTE)
        return _finish(nuclei.copy(), nuclei, settings)
    if not nuclei.any():
        return np.zeros(nuclei.shape, label_dtype(0))
    scaled = cellprofiler_scale(image)
    if not np.isfinite(scaled).all():
        raise SettingError("the cell channel has NaN or infinite pixels.")
    return _finish(grow(nuclei, scaled, settings), nuclei, settings)


def cells_from_maps(
    nuclei: np.ndarray, maps: np.ndarray, settings: CellSettings | None = None
) -> np.ndarray:
    """Cells from a cell model's maps, split among the nuclei as seeds.

    ``maps`` is the model's output for the field, (K, H, W): the cell foreground probability
    first, then a map that peaks inside each cell (the centre or distance map a model of this
    package learns). The foreground above ``settings.foreground_threshold`` (holes filled)
    is flooded from the nuclei over the falling second map, so neighbouring cells meet where
    it is lowest; foreground that no nucleus reaches is not a cell (each cell has one
    nucleus), and a nucleus outside the foreground is its own cell.
    """
    settings = settings or CellSettings(method="model", model="(maps given)")
    nuclei = _checked_nuclei(nuclei)
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] < 2 or maps.shape[1:] != nuclei.shape:
        raise SettingError(
            f"the cell model's maps have shape {maps.shape}; expected (2 or more, "
            f"{nuclei.shape[0]}, {nuclei.shape[1]}) for these nuclei."
        )
    if not nuclei.any():
        return np.zeros(nuclei.shape, label_dtype(0))
    mask = fill_mask_holes(maps[0] > settings.foreground_threshold) | (nuclei > 0)
    cells = watershed(
        -np.asarray(maps[1], np.float32),
        markers=nuclei,
        mask=mask,
        connectivity=np.ones((3, 3), bool),
    )
    return _finish(cells, nuclei, settings)


def _checked_nuclei(nuclei: np.ndarray) -> np.ndarray:
    nuclei = np.asarray(nuclei)
    if nuclei.ndim != 2:
        raise SettingError(f"the nuclei labels have shape {nuclei.shape}, not a 2-D image.")
    if nuclei.dtype.kind not in "uib":
        raise SettingError(f"the nuclei labels have pixel type {nuclei.dtype}, not integers.")
    if nuclei.size and nuclei.min() < 0:
        raise SettingError("the nuclei labels have negative numbers.")
    if nuclei.size and nuclei.max() > np.iinfo(np.int32).max:
        raise SettingError("the nuclei labels have numbers past 2**31 - 1.")
    return nuclei.astype(np.int32)


def _finish(cells: np.ndarray, nuclei: np.ndarray, settings: CellSettings) -> np.ndarray:
    """Holes filled (as CellProfiler fills them), then each nucleus restored in its cell."""
    cells = np.asarray(cells, np.int32)
    if settings.fill_holes:
        cells = centrosome.cpmorphology.fill_labeled_holes(cells, mask=cells == 0)
    # Every method keeps the seeds; this makes the guarantee hold whatever a method did.
    cells[nuclei > 0] = nuclei[nuclei > 0]
    return cells.astype(label_dtype(int(nuclei.max())))


# ----------------------------------------------------------------------------- cytoplasm


def outline(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a differently numbered 8-neighbour, or on the image's edge."""
    labels = np.asarray(labels)
    padded = np.pad(labels, 1, mode="constant", constant_values=-1)
    centre = padded[1:-1, 1:-1]
    different = np.zeros(labels.shape, bool)
    height, width = labels.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                different |= padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] != centre
    return different & (labels != 0)


def cytoplasm(cells: np.ndarray, nuclei: np.ndarray, *, shrink_nuclei: bool = True) -> np.ndarray:
    """Each cell minus its nucleus, numbered like the cell (IdentifyTertiaryObjects).

    With ``shrink_nuclei`` (CellProfiler's default), the nucleus's outline pixels stay in
    the cytoplasm, so a cell that is only its nucleus still has a ring of cytoplasm; without
    it, the cytoplasm has no nucleus pixel, and the cytoplasm of a cell that its nucleus
    fills is empty: its number exists (it is the cell's) but no pixel carries it. Measuring
    such a cytoplasm gives 0 area (see docs/cells.md).

    Examples
    --------
    >>> cells = np.zeros((5, 5), int); cells[:, :] = 1
    >>> nuclei = np.zeros((5, 5), int); nuclei[1:4, 1:4] = 1
    >>> int((cytoplasm(cells, nuclei, shrink_nuclei=False) == 1).sum())
    16
    >>> int((cytoplasm(cells, nuclei) == 1).sum())
    24
    """
    cells = np.asarray(cells)
    nuclei = np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise SettingError(f"the cells have shape {cells.shape}, but the nuclei {nuclei.shape}.")
    keep = nuclei == 0
    if shrink_nuclei:
        keep |= outline(nuclei)
    return np.where(keep, cells, 0).astype(cells.dtype, copy=False)


# ----------------------------------------------------------------------------- border


def discard_border(nuclei: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and cells without the cells that touch the field's border, renumbered 1..M.

    A cell touching the border goes with its nucleus; the pairs that stay keep their order
    and are numbered alike (cell ``k`` still grows from nucleus ``k``). CellProfiler's
    IdentifySecondaryObjects with "Discard secondary objects touching the border of the
    image?" and "Discard the associated primary objects?".

    Examples
    --------
    >>> nuclei = np.zeros((6, 9), int); nuclei[0, 1] = 1; nuclei[3, 4] = 2
    >>> cells = nuclei.copy(); cells[2:5, 3:6] = 2
    >>> kept_nuclei, kept_cells = discard_border(nuclei, cells)
    >>> int(kept_nuclei.max()), int(kept_cells[3, 4]), int(kept_cells.max())
    (1, 1, 1)
    """
    nuclei = np.asarray(nuclei)
    cells = np.asarray(cells)
    if cells.shape != nuclei.shape:
        raise SettingError(f"the cells have shape {cells.shape}, but the nuclei {nuclei.shape}.")
    count = int(max(nuclei.max(initial=0), cells.max(initial=0)))
    edge = np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]])
    edge = np.concatenate([edge, nuclei[0], nuclei[-1], nuclei[:, 0], nuclei[:, -1]])
    present = np.zeros(count + 1, bool)
    present[np.unique(nuclei)] = True
    present[np.unique(edge)] = False
    present[0] = False
    lookup = np.zeros(count + 1, np.int64)
    lookup[present] = np.arange(1, int(present.sum()) + 1)
    dtype = label_dtype(int(present.sum()))
    return lookup[nuclei].astype(dtype), lookup[cells].astype(dtype)


# ----------------------------------------------------------------------------- all three


def cell_objects(
    nuclei: np.ndarray,
    source: np.ndarray,
    settings: CellSettings | None = None,
    *,
    notes: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Nuclei, Cells and Cytoplasm of one field, as the settings ask: the one call a field needs.

    ``source`` is the raw cell-stain plane, or for ``method="model"`` the cell model's maps
    (K, H, W). Cells are grown (:func:`grow_cells` or :func:`cells_from_maps`), objects touching
    the border dropped with their nuclei when ``settings.discard_border`` (both renumbered
    alike), then the cytoplasm taken (:func:`cytoplasm`). Every set is numbered like the
    nuclei it returns: object ``k`` of each is the same cell.

    Examples
    --------
    >>> nuclei = np.zeros((9, 20), np.uint16); nuclei[4, 4] = 1; nuclei[4, 15] = 2
    >>> stain = np.zeros((9, 20), np.uint8); stain[1:8, 1:19] = 200
    >>> objects = cell_objects(nuclei, stain)
    >>> sorted(objects), int(objects["Cytoplasm"].max())
    (['Cells', 'Cytoplasm', 'Nuclei'], 2)
    """
    settings = settings or CellSettings()
    if settings.method == "model":
        cells = cells_from_maps(nuclei, source, settings)
    else:
        cells = grow_cells(nuclei, source, settings, notes=notes)
    nuclei = np.asarray(nuclei).astype(cells.dtype)
    if settings.discard_border:
        nuclei, cells = discard_border(nuclei, cells)
    return {
        "Nuclei": nuclei,
        "Cells": cells,
        "Cytoplasm": cytoplasm(cells, nuclei, shrink_nuclei=settings.shrink_nuclei),
    }

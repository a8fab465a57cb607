"""Model maps to instance labels: seeded watershed on the predicted centre (or distance) map.

The second map (called ``distance`` in these functions) is whatever the model learned to peak
at each object's centre: the centre map of current models or the distance to the edge of
older ones (see :mod:`cellseg_hcs.training.targets`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import watershed

from ..errors import SettingError
from ..settings import PostprocessSettings


def label_dtype(count: int) -> np.dtype:
    """uint16 while the labels fit, uint32 beyond 65535 objects."""
    return np.dtype(np.uint16) if count <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def maps_to_labels(
    foreground: np.ndarray,
    distance: np.ndarray,
    settings: PostprocessSettings | None = None,
    image: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Instance labels (0 = background, 1..N objects) from foreground and distance maps.

    The foreground (holes filled) is split into objects by a seeded watershed that floods
    ``-distance`` from the seeds chosen by ``settings.seeds`` (see
    :class:`PostprocessSettings`); a foreground region with no seed becomes one object of
    its own, so no foreground is lost. Alike fragments are merged again when
    ``settings.merge_height`` asks for it (``image``: the network's input, a YX plane or
    CYX with the first channel used, at the maps' size). Then small objects are dropped.
    Pixels where ``exclude`` is true are in no object, even inside a filled hole (another
    object set's pixels: a micronucleus never swallows the nucleus it rings).

    Examples
    --------
    >>> fg = np.zeros((6, 12)); fg[1:5, 1:11] = 1
    >>> dist = np.zeros((6, 12)); dist[2:4, 3] = dist[2:4, 8] = 1
    >>> np.unique(maps_to_labels(fg, dist, PostprocessSettings(min_size=1)))
    array([0, 1, 2], dtype=uint16)
    """
    settings = settings or PostprocessSettings()
    objects = split_objects(foreground, distance, settings, exclude)
    objects = merge_alike(objects, distance, image, settings)
    return drop_objects(objects, foreground, settings)


def split_objects(
    foreground: np.ndarray,
    distance: np.ndarray,
    settings: PostprocessSettings,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """The first stage of :func:`maps_to_labels`: objects before any is dropped (int32),
    none on the pixels where ``exclude`` is true (holes are filled first)."""
    if settings.seeds not in SEED_FINDERS:
        raise ValueError(f"unknown seeds {settings.seeds!r}; choose from {', '.join(SEED_FINDERS)}")
    mask = np.asarray(foreground) > settings.foreground_threshold
    if settings.fill_holes:
        mask = fill_holes(mask)
    if exclude is not None:
        mask &= ~np.asarray(exclude, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    distance = np.asarray(distance, dtype=np.float32)
    components, n_components = ndi.label(mask)
    return SEED_FINDERS[settings.seeds](components, n_components, distance, settings)


def merge_alike(
    objects: np.ndarray,
    distance: np.ndarray,
    image: np.ndarray | None,
    settings: PostprocessSettings,
) -> np.ndarray:
    """The middle stage of :func:`maps_to_labels`: fragments of one object merged again.

    Two touching objects of ``objects`` are merged when the peaks of ``distance`` at
    ``settings.merge_height`` put their own peaks in one object, and their mean intensities
    in ``image`` differ by less than ``settings.merge_contrast`` of the pair's mean (and so
    on, transitively). A no-op when ``merge_height`` is 0, with threshold seeds, or with
    fewer than two objects.
    """
    if settings.merge_height <= 0 or settings.seeds != "peaks":
        return objects
    if image is None:
        raise SettingError(
            f"these post-processing settings join alike fragments "
            f"(merge_height {settings.merge_height}), which needs the image "
            f"the maps came from: pass image=..., or set merge_height=0."
        )
    if objects.max() < 2:
        return objects
    plane = np.asarray(image)
    plane = np.asarray(plane[0] if plane.ndim == 3 else plane, dtype=np.float64)
    if plane.shape != objects.shape:
        raise SettingError(f"image {plane.shape} and maps {objects.shape} differ in shape.")
    # Touching pairs alike in brightness.
    count = int(objects.max()) + 1
    first, second = touching_pairs(objects)
    sizes = np.bincount(objects.ravel(), minlength=count)
    means = np.bincount(objects.ravel(), weights=plane.ravel(), minlength=count) / np.maximum(
        sizes, 1
    )
    pair_mean = (means[first] + means[second]) / 2
    alike = (pair_mean > 0) & (
        np.abs(means[first] - means[second]) < settings.merge_contrast * pair_mean
    )
    if not alike.any():
        return objects
    # Which object of the split at the merge height holds each object's peak: found only in
    # the foreground regions (which the objects cover) that hold an alike pair.
    coarse_of = _coarse_objects(
        objects,
        np.asarray(distance, dtype=np.float32),
        np.unique(first[alike]),
        settings.merge_height,
    )
    alike &= (coarse_of[first] == coarse_of[second]) & (coarse_of[first] > 0)
    if not alike.any():
        return objects
    # Objects joined by alike pairs, transitively: the connected parts of that graph.
    graph = coo_matrix(
        (np.ones(int(alike.sum())), (first[alike], second[alike])), shape=(count, count)
    )
    _, group = connected_components(graph, directed=False)
    group = group + 1
    group[0] = 0  # the background is in no pair: its own group, kept 0
    return group.astype(objects.dtype)[objects]


def touching_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of objects that share an edge (4-connected), once each: ``(first,
    second)`` label arrays with ``first < second``, sorted."""
    count = int(labels.max()) + 1
    keys = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touching = (a != b) & (a > 0) & (b > 0)
        low, high = np.minimum(a[touching], b[touching]), np.maximum(a[touching], b[touching])
        keys.append(low.astype(np.int64) * count + high)
    keys = np.unique(np.concatenate(keys))
    return keys // count, keys % count


def _coarse_objects(
    objects: np.ndarray, distance: np.ndarray, wanted: np.ndarray, height: float
) -> np.ndarray:
    """For each object, the object its distance peak falls in when its foreground region is
    split by peaks of ``height`` (as :func:`split_objects` splits it), in the regions of the
    ``wanted`` objects (0 elsewhere; numbers are unique within a region only)."""
    count = int(objects.max()) + 1
    regions, _ = ndi.label(objects > 0, CROSS)
    region_of = np.zeros(count, dtype=np.int64)
    region_of[objects] = regions
    boxes = ndi.find_objects(regions)
    coarse_of = np.zeros(count, dtype=np.int64)
    for region in np.unique(region_of[wanted]):
        box = boxes[region - 1]
        inside = regions[box] == region
        local = np.where(inside, distance[box], np.float32(0))
        coarse, _ = _flood_from_peaks(local, inside, height)
        parts = np.where(inside, objects[box], 0)
        ids = np.unique(parts[inside])
        peaks = ndi.maximum_position(local, parts, ids)
        coarse_of[ids] = [coarse[peak] for peak in peaks]
    return coarse_of


def drop_objects(
    labels: np.ndarray, foreground: np.ndarray, settings: PostprocessSettings
) -> np.ndarray:
    """The second stage of :func:`maps_to_labels`: small and doubtful objects dropped.

    Drops objects under ``min_size`` pixels, then those under ``min_size_fraction`` of the
    median area of the rest, then those whose mean foreground probability is under
    ``min_score``; the others are numbered 1..N in their order.
    """
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(settings.min_size, 1)
    keep[0] = False
    if settings.min_size_fraction > 0 and keep.any():
        keep &= sizes >= settings.min_size_fraction * np.median(sizes[keep])
    if settings.min_score > 0 and keep.any():
        total = np.bincount(
            labels.ravel(), weights=np.asarray(foreground, np.float64).ravel(), minlength=sizes.size
        )
        keep &= total >= settings.min_score * sizes
    dtype = label_dtype(int(keep.sum()))
    new_ids = np.zeros(sizes.size, dtype=dtype)
    new_ids[keep] = np.arange(1, keep.sum() + 1)
    return new_ids[labels]


def _objects_by_threshold(
    components: np.ndarray, n_components: int, distance: np.ndarray, settings: PostprocessSettings
) -> np.ndarray:
    """Seeds: connected regions where the distance map exceeds ``seed_threshold``."""
    seeds, n_seeds = ndi.label((distance > settings.seed_threshold) & (components > 0))
    # Which component each seed lies in, and how many seeds each component holds.
    seed_pixels = seeds > 0
    seed_component = np.zeros(n_seeds + 1, dtype=np.int64)
    seed_component[seeds[seed_pixels]] = components[seed_pixels]
    seed_count = np.bincount(seed_component[1:], minlength=n_components + 1)
    # A component with one seed is that seed's object as a whole (the watershed would flood
    # all of it from that seed); one with no seed is an object of its own, numbered after
    # the seeds in scan order. Only components with several seeds need the watershed.
    object_of = np.zeros(n_components + 1, dtype=np.int32)
    single = seed_component[1:][seed_count[seed_component[1:]] == 1]
    object_of[single] = np.flatnonzero(seed_count[seed_component[1:]] == 1) + 1
    orphans = np.flatnonzero(seed_count == 0)[1:]
    object_of[orphans] = n_seeds + 1 + np.arange(orphans.size, dtype=np.int32)
    labels = object_of[components]
    # Each component with several seeds is flooded in its own bounding box: the watershed
    # of one component does not depend on any other, and small boxes are much cheaper.
    boxes = ndi.find_objects(components)
    for component in np.flatnonzero(seed_count > 1):
        box = boxes[component - 1]
        inside = components[box] == component
        flooded = watershed(-distance[box], np.where(inside, seeds[box], 0), mask=inside)
        labels[box][inside] = flooded[inside]
    return labels


def _objects_by_peaks(
    components: np.ndarray, n_components: int, distance: np.ndarray, settings: PostprocessSettings
) -> np.ndarray:
    """Seeds: distance peaks rising ``peak_height`` above their pass to a higher peak.

    A component whose distance map has at most one local maximum that high is one object
    without further work; only the others are searched for h-maxima, each in its own box.
    """
    height = settings.peak_height
    inside_any = components > 0
    masked = np.where(inside_any, distance, np.float32(0))  # float32, like distance
    tall = (maximum_3x3(masked) == masked) & inside_any & (masked >= height)
    candidates = np.bincount(components[tall], minlength=n_components + 1)
    single = np.flatnonzero(candidates[1:] <= 1) + 1
    object_of = np.zeros(n_components + 1, dtype=np.int32)
    object_of[single] = np.arange(1, single.size + 1, dtype=np.int32)
    labels = object_of[components]
    count = single.size
    boxes = ndi.find_objects(components)
    for component in np.flatnonzero(candidates[1:] > 1) + 1:
        box = boxes[component - 1]
        inside = components[box] == component
        local = np.where(inside, masked[box], 0)
        flooded, n_seeds = _flood_from_peaks(local, inside, height)
        labels[box][inside] = flooded[inside] + count
        count += n_seeds
    return labels


def _flood_from_peaks(
    local: np.ndarray, inside: np.ndarray, height: float
) -> tuple[np.ndarray, int]:
    """One region's objects: the watershed of ``-local`` from its peaks of ``height``
    (h-maxima), numbered 1..n inside ``inside``; one object when it has at most one peak."""
    from skimage.morphology import h_maxima

    seeds, n_seeds = ndi.label(h_maxima(local, height, footprint=CROSS).astype(bool) & inside)
    if n_seeds <= 1:
        return inside.astype(np.int32), 1
    return watershed(-local, seeds, mask=inside), n_seeds


def maximum_3x3(image: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(image, size=3)``, edges included, from shifted views:
    the same array, about 6x faster on a full field."""
    rows = image.copy()
    np.maximum(rows[1:], image[:-1], out=rows[1:])
    np.maximum(rows[:-1], image[1:], out=rows[:-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


CROSS = ndi.generate_binary_structure(2, 1)  # 4-connected, as the components are
SEED_FINDERS = {"threshold": _objects_by_threshold, "peaks": _objects_by_peaks}


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background regions (4-connected) not touching the border.

    The same result as ``scipy.ndimage.binary_fill_holes``, from one labelling pass.
    """
    background, count = ndi.label(~mask)
    if count == 0:
        return mask
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[background]

"""Each vectorized measurement equals the library CellProfiler 4.2.8 calls, object by object.

CellProfiler's own agreement is in test_features_cellprofiler.py (real nuclei, in .venv-cp);
here the same rules meet many more shapes: holes, dents, touching and split objects, objects
on the image border, one-pixel objects, flat and nearly flat intensities.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.segmentation import watershed

from cellseg_hcs.field.measure import cellprofiler_scale, measure_objects, reference
from cellseg_hcs.field.measure.correlation import (
    _BelowLine,
    _variance_and_mean,
    costes_thresholds,
)
from cellseg_hcs.field.measure.granularity import opened_by_disk, openings_by_reconstruction
from cellseg_hcs.field.measure.objects import (
    FieldObjects,
    distances_to_edge,
    geodesic_distances,
    numbered,
)
from cellseg_hcs.field.measure.shape import measure_shape
from cellseg_hcs.field.measure.texture import FEATURES, measure_texture

MNFINDER = Path(__file__).parent / "data" / "mnfinder"
IMAGE = "test__2023-05-31_misc__MCC13_rfpcyto_w1cDAPI_s43.tif"


def _shapes(seed: int) -> np.ndarray:
    """Touching, dented and holed objects, some on the border, one split in two, one pixel."""
    rng = np.random.default_rng(seed)
    size = (90, 110)
    markers = np.zeros(size, np.int32)
    for number, (r, c) in enumerate(rng.integers(0, size, (14, 2)), start=1):
        markers[r, c] = number
    regions = watershed(rng.random(size), markers)
    keep = rng.random(size) > 0.08  # holes and dents
    labels = np.where(keep, regions, 0)
    labels[labels == 3] = 0
    labels[40:44, 5:9] = 3  # object 3 in two pieces
    labels[80:83, 100:104] = 3
    labels[0, 0] = 0
    labels[2, 2] = 15  # one pixel
    labels[(labels == 15) & (np.indices(size)[0] > 3)] = 0
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.int32)


@pytest.mark.parametrize("numba", [True, False])  # compiled kernels, and the fallbacks
@pytest.mark.parametrize("seed", range(4))
def test_shape_equals_regionprops_for_every_object(seed, numba, monkeypatch):
    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    labels = _shapes(seed)
    ours = measure_shape(FieldObjects(labels, {}), advanced=True)
    props = regionprops(labels)
    expected = {
        "Area": [p.area for p in props],
        "Perimeter": [p.perimeter for p in props],
        "EulerNumber": [p.euler_number for p in props],
        "ConvexArea": [p.area_convex for p in props],
        "MajorAxisLength": [p.axis_major_length for p in props],
        "MinorAxisLength": [p.axis_minor_length for p in props],
        "Eccentricity": [p.eccentricity for p in props],
        "Orientation": [p.orientation * 180 / np.pi for p in props],
        "Extent": [p.extent for p in props],
        "HuMoment_3": [p.moments_hu[3] for p in props],
        "NormalizedMoment_2_1": [p.moments_normalized[2, 1] for p in props],
        "CentralMoment_2_2": [p.moments_central[2, 2] for p in props],
        "SpatialMoment_1_3": [p.moments[1, 3] for p in props],
        "InertiaTensorEigenvalues_1": [p.inertia_tensor_eigvals[1] for p in props],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(
            ours[f"AreaShape_{name}"], values, rtol=1e-9, atol=1e-9, err_msg=name
        )


def test_shape_agrees_with_cp_measure_on_real_nuclei():
    labels = numbered(tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE))
    objects = FieldObjects(labels, {})
    ours = measure_shape(objects, advanced=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = reference.shape(objects, advanced=True)
    assert set(theirs) == set(ours)
    for name, values in theirs.items():
        np.testing.assert_allclose(ours[name], values, rtol=1e-9, atol=1e-9, err_msg=name)


def test_distance_to_edge_equals_centrosomes_with_touching_objects_on_the_border():
    from centrosome.cpmorphology import distance_to_edge

    labels = _shapes(7)
    objects = FieldObjects(labels, {})
    expected = distance_to_edge(labels).ravel()[objects.pixels]
    np.testing.assert_array_equal(distances_to_edge(objects, image_border_is_edge=False), expected)


@pytest.mark.parametrize("numba", [True, False])  # one matrix per object, and the fallback
@pytest.mark.parametrize("levels", [2, 3, 256])
def test_texture_equals_mahotas_for_every_object_and_direction(levels, numba, monkeypatch):
    import mahotas
    from skimage.util import img_as_ubyte

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    rng = np.random.default_rng(levels)
    labels = _shapes(levels)
    image = rng.integers(0, levels, labels.shape) / (levels - 1) * rng.uniform(0.2, 1)
    ours = measure_texture(FieldObjects(labels, {"A": image}), scale=3)
    for prop in regionprops(labels, img_as_ubyte(image)):
        try:
            expected = mahotas.features.haralick(
                prop.image_intensity, distance=3, ignore_zeros=True
            )
        except ValueError:  # no pair in some direction: CellProfiler records 0
            expected = np.zeros((4, 13))
        expected[~np.isfinite(expected)] = 0
        for direction in range(4):
            for index, feature in enumerate(FEATURES):
                assert ours[f"Texture_{feature}_A_3_{direction:02d}_256"][
                    prop.label - 1
                ] == pytest.approx(expected[direction, index], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("numba", [True, False])  # the max-tree, and the fallback
@pytest.mark.parametrize("levels", [12, None])  # few values (ties); more than 2**16
@pytest.mark.parametrize("shape", [(300, 300), (1, 40), (37, 1), (29, 61)])
def test_openings_by_reconstruction_equal_skimages_reconstruction(
    levels, shape, numba, monkeypatch
):
    from skimage.morphology import disk, erosion, reconstruction

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    rng = np.random.default_rng(0)
    image = rng.random(shape)
    if levels:
        image = np.round(image * levels) / levels
    seed = image
    for opened in openings_by_reconstruction(image, 3):
        seed = erosion(seed, disk(1))
        np.testing.assert_array_equal(opened, reconstruction(seed, image, footprint=disk(1)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (50, 70), (168, 700)])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_compiled_distances_equal_scipys_exact_distance_transform(shape, fraction):
    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    mask = np.random.default_rng(7).random(shape) < fraction
    mask[0, 0] = False
    expected = ndi.distance_transform_edt(mask)
    np.testing.assert_array_equal(np.sqrt(compiled.squared_distances(mask)), expected)
    assert np.isinf(compiled.squared_distances(np.ones((4, 5), bool))).all()


def test_distances_to_edge_are_the_same_without_numba(monkeypatch):
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.objects import distances_to_edge

    labels = _shapes(5)
    compiled_ones = distances_to_edge(FieldObjects(labels, {}), image_border_is_edge=True)
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    scipys = distances_to_edge(FieldObjects(labels, {}), image_border_is_edge=True)
    np.testing.assert_array_equal(compiled_ones, scipys)


@pytest.mark.parametrize("numba", [True, False])  # the compiled kernel, and scipy's filters
@pytest.mark.parametrize("shape", [(32, 32), (135, 135), (3, 50), (50, 3), (21, 5)])
@pytest.mark.parametrize("radius", [1, 3, 10])
def test_opening_by_a_disk_equals_skimages(shape, radius, numba, monkeypatch):
    from skimage.morphology import dilation, disk, erosion

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    image = np.random.default_rng(radius).random(shape)
    image[: shape[0] // 2] = np.round(image[: shape[0] // 2] * 4)  # ties too
    element = disk(radius, dtype=bool)
    expected = dilation(erosion(image, element), element)
    np.testing.assert_array_equal(opened_by_disk(image, radius), expected)


def test_opening_by_a_disk_of_an_image_thinner_than_three_pixels_stays_in_its_values(
    monkeypatch,
):
    # scipy's filter reads outside such an image (values like 1e-322 come back); the
    # reflected image is used here, and both paths give the same.
    from cellseg_hcs.field.measure import compiled

    image = np.array([[0.1, 0.5], [0.9, 0.3]])
    compiled_one = opened_by_disk(image, 10)
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    np.testing.assert_array_equal(opened_by_disk(image, 10), compiled_one)
    assert np.all(np.isin(compiled_one, image))


@pytest.mark.parametrize("size", [2, 3, 8193, 1_000_003])
def test_variance_and_mean_are_numpys_to_the_last_bit(size):
    values = np.random.default_rng(size).random(size) * 1000
    variance, mean = _variance_and_mean(values, np.empty_like(values))
    assert variance == np.var(values, ddof=1)
    assert mean == np.mean(values)


def _as_16_bit(image: np.ndarray) -> np.ndarray:
    """An 8-bit image as 16-bit with the same values on CellProfiler's 0..1 scale (x 257:
    65535 = 255 x 257), so that a 16-bit scale's tables index it."""
    return image.astype(np.uint16) * 257


# A set of identical pixels has no r: scipy warns, and CellProfiler moves neither bound.
@pytest.mark.filterwarnings("ignore:An input array is constant")
@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("shift", [0, 2, 9])
def test_costes_search_over_running_sums_equals_forming_each_set(shift, numba, monkeypatch):
    from cellseg_hcs.field.measure import compiled

    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    dna = _as_16_bit(tifffile.imread(MNFINDER / "images" / IMAGE))
    other = np.roll(dna, shift, axis=1)  # correlated, less with each shift
    a, b = cellprofiler_scale(dna).ravel(), cellprofiler_scale(other).ravel()
    fast = costes_thresholds(a, b, 65535, (dna, other), (65535, 65535))
    monkeypatch.setattr(_BelowLine, "SMALL", 10**12)  # every candidate's set formed
    assert costes_thresholds(a, b, 65535) == fast
    monkeypatch.setattr(_BelowLine, "SIGN_MARGIN", np.inf)  # and scipy's r for every one
    assert costes_thresholds(a, b, 65535) == fast


@pytest.mark.parametrize("group", ["zernike", "intensity", "granularity", "radial_zernikes"])
def test_groups_agree_with_cp_measure_on_real_nuclei(group):
    labels = tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32)
    pixels = tifffile.imread(MNFINDER / "images" / IMAGE)
    ours = measure_objects(labels, {"DNA": pixels}, features=[group])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = numbered(labels)
        theirs = reference.GROUPS[group](FieldObjects(labels, {"DNA": cellprofiler_scale(pixels)}))
    if group == "intensity":  # which of equal maxima is "the" brightest pixel: see intensity.py
        theirs = {k: v for k, v in theirs.items() if "MaxIntensity_" not in k}
    for name, values in theirs.items():
        np.testing.assert_allclose(
            ours[f"Nuclei_{name}"], values, rtol=1e-6, atol=1e-9, err_msg=name
        )


@pytest.mark.parametrize("numba", [True, False])  # compiled, and the numpy fallback
def test_geodesic_distances_equal_centrosomes_propagation_object_by_object(numba, monkeypatch):
    from centrosome.propagate import propagate

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    labels = _shapes(5)  # object 3 is in two pieces: its far piece is never reached
    objects = FieldObjects(labels, {})
    seeds = objects.starts + objects.areas // 2
    ours = geodesic_distances(objects, seeds)
    for index in range(objects.count):
        mask = labels == index + 1
        seed = np.zeros(labels.shape, np.int32)
        seed.ravel()[objects.pixels[seeds[index]]] = 1
        _, expected = propagate(np.zeros(labels.shape), seed, mask, 1)
        span = slice(objects.starts[index], objects.starts[index] + objects.areas[index])
        np.testing.assert_array_equal(ours[span], expected[mask])
    assert np.any(ours == -1)


@pytest.mark.parametrize("seed", range(3))
def test_granularitys_object_weights_are_the_same_compiled_and_in_numpy(seed, monkeypatch):
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.granularity import _Grid

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    labels = _shapes(seed)
    compiled_ones = _Grid(FieldObjects(labels, {})).object_means
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    numpys = _Grid(FieldObjects(labels, {})).object_means
    np.testing.assert_array_equal(compiled_ones.indptr, numpys.indptr)
    np.testing.assert_array_equal(compiled_ones.indices, numpys.indices)
    np.testing.assert_array_equal(compiled_ones.data, numpys.data)  # same sums, same order


def test_compiled_growth_gives_each_pixel_scipys_nearest_object_ties_included(monkeypatch):
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.neighbors import _grown

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    rng = np.random.default_rng(3)
    images = [_shapes(seed) for seed in range(3)]
    for _ in range(400):  # rectangles on small grids: many pixels equally near two objects
        height, width = rng.integers(1, 30, 2)
        labels = np.zeros((height, width), np.int32)
        for number in range(1, rng.integers(2, 7)):
            y, x = rng.integers(0, height), rng.integers(0, width)
            labels[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = number
        if labels.any():
            images.append(labels)
    for labels in images:
        compiled_ones = _grown(labels)
        monkeypatch.setattr(compiled, "AVAILABLE", False)
        np.testing.assert_array_equal(compiled_ones, _grown(labels))
        monkeypatch.setattr(compiled, "AVAILABLE", True)


@pytest.mark.parametrize("seed", range(3))
def test_zernike_sums_are_the_same_compiled_and_in_numpy(seed, monkeypatch):
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.zernike import _sums

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    labels = _shapes(seed)
    labels[0, 0] = labels.max() + 1  # a one-pixel object: radius 0, NaN both ways
    image = np.random.default_rng(seed).random(labels.shape)
    compiled_ones, radii = _sums(FieldObjects(labels, {"DNA": image}))
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    with np.errstate(invalid="ignore"):  # 0 / 0 for the one-pixel object
        numpys, _ = _sums(FieldObjects(labels, {"DNA": image}))
    assert radii[-1] == 0
    for name in ("__shape__", "DNA"):
        # the same pixels in each disk; sums added in another order
        np.testing.assert_allclose(compiled_ones[name], numpys[name], rtol=1e-10, atol=1e-12)


def test_compiled_feret_diameters_are_centrosomes_to_the_last_bit():
    from centrosome.cpmorphology import feret_diameter
    from scipy.ndimage import binary_opening
    from skimage.measure import label

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    rng = np.random.default_rng(11)
    images = [_shapes(seed) for seed in range(3)]
    for index in range(120):  # blobs, thin lines, single pixels, two-pixel hulls
        height, width = rng.integers(3, 50, 2)
        mask = rng.random((height, width)) < rng.choice([0.3, 0.5, 0.7])
        images.append(label(binary_opening(mask) if index % 2 else mask, connectivity=1))
    for labels in images:
        objects = FieldObjects(labels.astype(np.int32), {})
        if objects.count == 0:
            continue
        hull, sizes = objects.hulls
        expected = feret_diameter(hull, sizes, np.arange(1, objects.count + 1))
        found = compiled.feret_diameters(hull[:, 1:].astype(np.float64), sizes.astype(np.int64))
        np.testing.assert_array_equal(found[0], expected[0])
        np.testing.assert_array_equal(found[1], expected[1])


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("shift", [0, 3])
def test_costes_search_on_a_falling_line_equals_forming_each_set(shift, numba, monkeypatch):
    from scipy.stats import pearsonr

    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    monkeypatch.setattr(compiled, "AVAILABLE", numba)
    dna = _as_16_bit(tifffile.imread(MNFINDER / "images" / IMAGE))
    other = np.roll(dna.max() - dna, shift, axis=1)  # anti-correlated: the line falls
    a, b = cellprofiler_scale(dna).ravel(), cellprofiler_scale(other).ravel()
    fast = costes_thresholds(a, b, 65535, (dna, other), (65535, 65535))
    computed = costes_thresholds(a, b, 65535)  # the intervals found pixel by pixel
    looked_up = _BelowLine(a, b, -0.9, 0.8, 65535, (dna, other), (65535, 65535))
    below = _BelowLine(a, b, -0.9, 0.8, 65535)
    assert not below.direct
    for by_table, by_pixel in zip(looked_up.outside, below.outside):  # the same intervals
        np.testing.assert_array_equal(by_table, by_pixel)
    candidates = range(1, 65535, 997)
    signs = [below.correlation(m, pearsonr) for m in candidates]
    monkeypatch.setattr(_BelowLine, "SMALL", 10**12)  # every candidate's set formed
    assert costes_thresholds(a, b, 65535) == fast == computed
    formed = _BelowLine(a, b, -0.9, 0.8, 65535)
    expected = [formed.correlation(m, pearsonr) for m in candidates]
    assert [r is None for r in signs] == [r is None for r in expected]
    assert [r < 0 for r in signs if r is not None] == [r < 0 for r in expected if r is not None]


def test_texture_is_the_same_compiled_and_in_numpy_on_real_nuclei(monkeypatch):
    """Every object of a real field, both channels' quantizations: the matrix per object
    and the sorted cells give the same features (sums in another order; InfoMeas1 is a
    difference of two close entropies, hence 1e-8)."""
    from cellseg_hcs.field.measure import compiled

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    labels = tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32)
    dna = cellprofiler_scale(tifffile.imread(MNFINDER / "images" / IMAGE))
    channels = {"DNA": dna, "Dim": dna * 0.1}  # few levels: many equal cells and pairs
    ours = measure_texture(FieldObjects(labels, channels), scale=3)
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    numpys = measure_texture(FieldObjects(labels, channels), scale=3)
    assert ours.keys() == numpys.keys()
    for name, values in numpys.items():
        np.testing.assert_allclose(ours[name], values, rtol=1e-8, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("slope, intercept", [(1.0, 0.0), (0.7, 0.013), (-1.3, 0.9), (3e-9, 0.2)])
def test_costes_candidate_finders_are_the_same_compiled_and_in_numpy(slope, intercept):
    """The largest candidate under a rising line and the smallest over a falling one, value
    by value: the compiled loop takes numpy's floating point steps, values on the line and
    between its steps included, and a nearly flat line whose estimate overflows."""
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure import correlation as costes

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    scale, top = 65535.0, 65537
    steps = np.arange(-3, top + 4)
    on_line = (slope * (steps / scale)) + intercept
    values = np.concatenate(
        [
            np.arange(65536) / 65535,  # a 16-bit image's levels
            on_line,
            np.nextafter(on_line, -np.inf),
            np.nextafter(on_line, np.inf),
            np.random.default_rng(0).uniform(-0.5, 1.5, 10_000),
        ]
    )
    for finder in (costes._last_on_line, costes._first_on_line):
        fast = finder(values, slope, intercept, scale, top)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compiled, "AVAILABLE", False)
            slow = finder(values, slope, intercept, scale, top)
        np.testing.assert_array_equal(fast, slow)


def test_costes_running_sums_are_numpys_cumulative_sums():
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.correlation import _running_sums

    rng = np.random.default_rng(1)
    starts, ends = rng.random((6, 1003)) * 1e3, rng.random((6, 1003)) * 1e3
    out = np.empty((6, 1002))
    fast = np.array(_running_sums(starts, ends, out))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled, "AVAILABLE", False)
        slow = np.array(_running_sums(starts, ends, np.empty((6, 1002))))
    expected = np.cumsum(starts - ends, axis=1)[:, :1002]
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(slow, expected)


def test_groups_measured_in_threads_give_the_same_table_to_the_last_bit():
    """Every group of the full set, two real channels, measured in one thread and in three:
    the same columns in the same order, every value equal (NaN where NaN)."""
    labels = tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32)
    dna = tifffile.imread(MNFINDER / "images" / IMAGE)
    other = np.ascontiguousarray(dna[::-1, ::-1])  # real pixels, not aligned with the nuclei
    channels = {"DNA": dna, "Other": other}
    alone = measure_objects(labels, channels, features="full")
    together = measure_objects(labels, channels, features="full", threads=3)
    assert list(together.columns) == list(alone.columns)
    assert together.equals(alone)


def test_a_result_that_threads_ask_for_at_once_is_made_once():
    """Two groups in two threads asking for the same shared array: one makes it, the other
    waits for it and gets the same object."""
    import threading
    import time

    objects = FieldObjects(np.ones((4, 4), np.int32), {})
    made = []

    def make():
        made.append(threading.get_ident())
        time.sleep(0.05)  # long enough for the other thread to ask meanwhile
        return np.arange(3)

    got = [None, None]

    def ask(slot):
        got[slot] = objects.cached("shared", make)

    threads = [threading.Thread(target=ask, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert got[0] is got[1]


def test_grown_objects_contacts_are_the_same_compiled_and_in_numpy(monkeypatch):
    """Neighbours, outlines and touching pixels of grown objects: real nuclei grown, random
    shapes grown, and small grids where objects meet at corners and on the image edge."""
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.neighbors import _contacts, _grown

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    real = tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32)
    images = [_grown(numbered(real))] + [_grown(_shapes(seed)) for seed in range(3)]
    rng = np.random.default_rng(5)
    for _ in range(200):
        height, width = rng.integers(1, 12, 2)
        count = int(rng.integers(1, 6))
        images.append(rng.integers(1, count + 1, (height, width)).astype(np.int32))
    for grown in images:
        count = int(grown.max())
        ours = _contacts(grown, count)
        monkeypatch.setattr(compiled, "AVAILABLE", False)
        numpys = _contacts(grown, count)
        monkeypatch.setattr(compiled, "AVAILABLE", True)
        for mine, theirs in zip(ours, numpys):
            np.testing.assert_array_equal(mine, theirs)


def test_object_boxes_are_scipys_find_objects():
    labels = numbered(tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32))
    for image in (labels, _shapes(0), _shapes(1)):
        boxes = FieldObjects(image, {}).boxes
        expected = [(b[0].start, b[1].start, b[0].stop, b[1].stop) for b in ndi.find_objects(image)]
        np.testing.assert_array_equal(boxes, np.array(expected))


@pytest.mark.parametrize("numba", [True, False])  # compiled cosines, and the numpy fallback
def test_enclosing_circles_are_centrosomes_to_the_last_bit(numba, monkeypatch):
    """Real nuclei, and random rectangles, ellipses and scattered pixels of one label (many
    equal angles, right angles and one-point hulls): every centre and radius is
    centrosome's bit for bit, as a pixel on the circle is in or out of the Zernike disk by
    the last bit of the radius."""
    from centrosome.cpmorphology import minimum_enclosing_circle

    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.enclosing import enclosing_circles

    monkeypatch.setattr(compiled, "AVAILABLE", numba and compiled.AVAILABLE)
    rng = np.random.default_rng(11)
    images = [numbered(tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32))]
    rows, cols = np.ogrid[:160, :160]
    for _ in range(25):
        labels = np.zeros((160, 160), np.int32)
        for number in range(1, 40):
            y, x = rng.integers(0, 160, 2)
            height, width = rng.integers(1, 14, 2)
            if number % 3 == 0:
                labels[y : y + height, x : x + width] = number
            elif number % 3 == 1:
                labels[((rows - y) / height) ** 2 + ((cols - x) / width) ** 2 <= 1] = number
            else:
                for dy, dx in rng.integers(-7, 8, (rng.integers(1, 6), 2)):
                    labels[np.clip(y + dy, 0, 159), np.clip(x + dx, 0, 159)] = number
        images.append(numbered(labels))
    for labels in images:
        objects = FieldObjects(labels, {})
        expected = minimum_enclosing_circle(labels, np.arange(1, objects.count + 1), objects.hulls)
        centres, radii = enclosing_circles(*objects.hulls)
        np.testing.assert_array_equal(radii, expected[1])
        np.testing.assert_array_equal(centres, expected[0])


def test_perimeters_are_the_same_compiled_and_in_numpy(monkeypatch):
    """Every object's perimeter, real nuclei (some on the image's edge) and random shapes:
    the same border patterns, summed in the same order."""
    from cellseg_hcs.field.measure import compiled
    from cellseg_hcs.field.measure.shape import _perimeter

    assert compiled.AVAILABLE, "numba is a dependency: the compiled path must run here"
    real = numbered(tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32))
    for labels in [real] + [_shapes(seed) for seed in range(4)]:
        ours = _perimeter(FieldObjects(labels, {}))
        monkeypatch.setattr(compiled, "AVAILABLE", False)
        numpys = _perimeter(FieldObjects(labels, {}))
        monkeypatch.setattr(compiled, "AVAILABLE", True)
        np.testing.assert_array_equal(ours, numpys)

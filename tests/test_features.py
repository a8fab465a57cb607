"""Per-object features: CellProfiler's names, the sets, exact values, pycytominer reading them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.measure import FEATURE_SETS, measure_objects

META = {"Metadata_Plate": "P1", "Metadata_Well": "B03", "Metadata_Site": 2}


def _two_squares():
    labels = np.zeros((40, 40), np.uint16)
    labels[2:12, 3:13] = 1  # 10 x 10
    labels[20:36, 20:28] = 2  # 16 x 8
    dna = np.zeros((40, 40), np.uint16)
    dna[labels == 1] = 6553  # 0.1 on CellProfiler's scale
    dna[labels == 2] = 32767
    return labels, dna


def test_minimal_set_has_cellprofiler_export_names_and_metadata_first():
    labels, dna = _two_squares()
    table = measure_objects(labels, {"DNA": dna}, features="minimal", metadata=META)
    assert list(table.columns[:7]) == [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "ObjectNumber",
        "Nuclei_Number_Object_Number",
        "Nuclei_Location_Center_X",
        "Nuclei_Location_Center_Y",
    ]
    for column in (
        "Nuclei_AreaShape_Area",
        "Nuclei_AreaShape_Perimeter",
        "Nuclei_AreaShape_MaxFeretDiameter",
        "Nuclei_Intensity_MeanIntensity_DNA",
        "Nuclei_Location_CenterMassIntensity_X_DNA",
    ):
        assert column in table.columns
    assert not any("Texture" in c or "Neighbors" in c for c in table.columns)
    assert table["Metadata_Well"].tolist() == ["B03", "B03"]
    assert table["ObjectNumber"].tolist() == [1, 2]


def test_values_are_exact_on_known_objects():
    labels, dna = _two_squares()
    table = measure_objects(labels, {"DNA": dna}, features="minimal")
    assert table["Nuclei_AreaShape_Area"].tolist() == [100.0, 128.0]
    np.testing.assert_allclose(table["Nuclei_Location_Center_X"], [7.5, 23.5])
    np.testing.assert_allclose(table["Nuclei_Location_Center_Y"], [6.5, 27.5])
    np.testing.assert_allclose(
        table["Nuclei_Intensity_MeanIntensity_DNA"], [6553 / 65535, 32767 / 65535]
    )
    np.testing.assert_allclose(
        table["Nuclei_Intensity_IntegratedIntensity_DNA"], [100 * 6553 / 65535, 128 * 32767 / 65535]
    )


def test_default_set_adds_texture_at_one_scale_and_neighbors():
    labels, dna = _two_squares()
    table = measure_objects(labels, {"DNA": dna}, features="default")
    texture = [c for c in table.columns if "_Texture_" in c]
    assert "Nuclei_Texture_Contrast_DNA_3_00_256" in texture
    assert {c.rsplit("_", 2)[-2] for c in texture} == {"00", "01", "02", "03"}
    assert {c.split("_")[-3] for c in texture} == {"3"}
    assert table["Nuclei_Neighbors_NumberOfNeighbors_Expanded"].tolist() == [1.0, 1.0]
    assert table["Nuclei_Neighbors_FirstClosestObjectNumber_Expanded"].tolist() == [2.0, 1.0]


def test_full_set_measures_every_group_and_correlates_each_pair_of_channels():
    labels, dna = _two_squares()
    rng = np.random.default_rng(0)
    actin = rng.integers(0, 60000, dna.shape).astype(np.uint16)
    table = measure_objects(labels, {"DNA": dna, "Actin": actin}, features="full")
    for prefix in (
        "Nuclei_AreaShape_Zernike_0_0",
        "Nuclei_AreaShape_HuMoment_0",
        "Nuclei_Granularity_1_DNA",
        "Nuclei_RadialDistribution_FracAtD_Actin_1of4",
        "Nuclei_RadialDistribution_ZernikeMagnitude_DNA_0_0",
        "Nuclei_Texture_Contrast_Actin_3_00_256",
        "Nuclei_Correlation_Correlation_DNA_Actin",
        "Nuclei_Correlation_Costes_DNA_Actin",
        "Nuclei_Correlation_Costes_Actin_DNA",
        "Nuclei_Correlation_Manders_DNA_Actin",
        "Nuclei_Correlation_RWC_Actin_DNA",
    ):
        assert prefix in table.columns
    assert (
        table.drop(columns=[c for c in table if c.startswith("Metadata")])
        .dtypes.map(lambda d: d.kind in "if")
        .all()
    )


@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_field_with_no_cells_writes_empty_table_with_the_same_columns(features):
    labels, dna = _two_squares()
    full = measure_objects(labels, {"DNA": dna}, features=features, metadata=META)
    empty = measure_objects(np.zeros_like(labels), {"DNA": dna}, features=features, metadata=META)
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)


def test_objects_with_gaps_in_their_numbers_are_numbered_one_to_n():
    labels, dna = _two_squares()
    labels[labels == 2] = 7
    table = measure_objects(labels, {"DNA": dna}, features="minimal")
    assert table["ObjectNumber"].tolist() == [1, 2]
    assert table["Nuclei_AreaShape_Area"].tolist() == [100.0, 128.0]


def test_object_name_prefixes_every_measurement_column():
    labels, dna = _two_squares()
    table = measure_objects(labels, {"DNA": dna}, object_name="Cells", features="minimal")
    measured = [c for c in table.columns if c not in ("ObjectNumber",)]
    assert all(c.startswith("Cells_") for c in measured)


def test_unknown_feature_set_is_a_setting_error_naming_the_sets():
    labels, dna = _two_squares()
    with pytest.raises(SettingError, match="minimal, default, full"):
        measure_objects(labels, {"DNA": dna}, features="everything")


def test_pycytominer_aggregates_the_tables_by_well_with_no_renaming():
    from pycytominer import aggregate

    labels, dna = _two_squares()
    parts = []
    for well, site, factor in (("B03", 0, 1), ("B03", 1, 2), ("B04", 0, 3)):
        meta = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": site}
        parts.append(
            measure_objects(labels, {"DNA": dna // factor}, features="default", metadata=meta)
        )
    cells = pd.concat(parts, ignore_index=True)
    profiles = aggregate(
        cells, strata=["Metadata_Plate", "Metadata_Well"], features="infer", operation="median"
    )
    assert profiles["Metadata_Well"].tolist() == ["B03", "B04"]
    measured = [c for c in cells.columns if c.startswith("Nuclei_")]
    assert set(measured) <= set(profiles.columns)
    expected = cells.groupby("Metadata_Well")["Nuclei_Intensity_MeanIntensity_DNA"].median()
    np.testing.assert_allclose(profiles["Nuclei_Intensity_MeanIntensity_DNA"], expected.values)


def test_of_equally_bright_pixels_the_last_in_raster_order_is_the_brightest():
    labels = np.zeros((10, 10), np.uint16)
    labels[2:8, 2:8] = 1
    dna = np.zeros((10, 10), np.uint16)
    dna[3, 6] = dna[6, 3] = dna[6, 5] = 900  # three maxima; (row 6, column 5) is last
    table = measure_objects(labels, {"DNA": dna}, features="minimal")
    assert table["Nuclei_Location_MaxIntensity_X_DNA"].tolist() == [5.0]
    assert table["Nuclei_Location_MaxIntensity_Y_DNA"].tolist() == [6.0]


def test_closest_neighbours_of_many_objects_match_all_pairwise_distances():
    # 40 x 40 single pixels on a jittered grid: 1600 objects, many equal distances.
    rng = np.random.default_rng(3)
    labels = np.zeros((200, 200), np.int32)
    rows, cols = np.mgrid[2:200:5, 2:200:5]
    rows, cols = rows.ravel(), cols.ravel()
    moved = rng.random(rows.size) < 0.3
    rows[moved] += 1
    labels[rows, cols] = np.arange(1, rows.size + 1)
    table = measure_objects(labels, {"DNA": labels.astype(np.uint16)}, features=["neighbors"])
    distance = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    order = np.lexsort([distance])  # CellProfiler's: stable, ties to the lower number
    first, second = order[:, 1], order[:, 2]
    prefix = "Nuclei_Neighbors_"
    np.testing.assert_array_equal(table[f"{prefix}FirstClosestObjectNumber_Expanded"], first + 1)
    np.testing.assert_array_equal(table[f"{prefix}SecondClosestObjectNumber_Expanded"], second + 1)
    np.testing.assert_allclose(
        table[f"{prefix}SecondClosestDistance_Expanded"], distance[np.arange(rows.size), second]
    )


def test_warm_up_prepares_the_columns_the_first_measurement_uses():
    from cellseg_hcs.field.measure import feature_columns, warm_up

    feature_columns.cache_clear()
    warm_up(("DNA", "Actin"), "default", "Cells")
    misses = feature_columns.cache_info().misses
    labels, dna = _two_squares()
    measure_objects(labels, {"DNA": dna, "Actin": dna}, object_name="Cells", metadata=META)
    assert feature_columns.cache_info().misses == misses  # found, not made again


def test_object_sets_of_a_field_share_the_image_work_and_measure_as_alone():
    labels, dna = _two_squares()
    rng = np.random.default_rng(1)
    channels = {"DNA": dna, "Actin": rng.integers(0, 60000, dna.shape).astype(np.uint16)}
    cells = np.zeros_like(labels)
    cells[1:14, 2:15] = 1
    cells[18:38, 18:30] = 2
    shared: dict = {}
    measure_objects(labels, channels, features="full", images=shared)
    assert {key[0] for key in shared} == {"granularity", "costes", "scaled"}
    together = measure_objects(cells, channels, object_name="Cells", features="full", images=shared)
    alone = measure_objects(cells, channels, object_name="Cells", features="full")
    pd.testing.assert_frame_equal(together, alone)

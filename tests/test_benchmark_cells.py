"""The cells benchmark scores every method against annotated whole cells (benchmarks/cells.py)."""

from __future__ import annotations

from conftest import load_benchmark
from test_cell_training_data import write_cellpose_folder


def test_cells_benchmark_scores_each_method_against_the_annotated_cells(tmp_path):
    cells = load_benchmark("cells")
    folder = write_cellpose_folder(tmp_path / "annotated", count=2)
    result = cells.accuracy(folder, None, 0, 1, None)

    assert result["images"] == 2
    assert set(result["methods"]) == set(cells.VARIANTS)
    assert all(row["one_cell_per_nucleus"] for row in result["methods"].values())
    # round, separate synthetic cells, each with its bright nucleus: propagation finds them
    assert result["methods"]["propagation"]["f1"] >= 0.9


def test_cells_benchmark_speed_field_is_tiled_from_the_real_crops():
    cells = load_benchmark("cells")
    dna, stain = cells.tiled_field(500)
    assert dna.shape == stain.shape == (500, 500)
    assert dna.dtype == stain.dtype == "uint8" and dna.any() and stain.any()

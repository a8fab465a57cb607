"""A model file is one safetensors file that brings back the same network and its metadata."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import cellseg_hcs as cs
from cellseg_hcs.errors import ModelError
from cellseg_hcs.model.model import Model


def test_saved_model_loads_with_identical_maps_and_metadata(tiny_model, tmp_path):
    tiny_model.info.metrics = {"val_f1": 0.5}
    path = tiny_model.save(tmp_path / "m.safetensors")
    loaded = cs.load_model(path)
    image = np.random.default_rng(0).random((40, 56)).astype(np.float32)
    np.testing.assert_array_equal(
        tiny_model.predict_maps(image, backend="torch"), loaded.predict_maps(image, backend="torch")
    )
    assert loaded.info.metrics == {"val_f1": 0.5}
    assert loaded.info.network == tiny_model.info.network
    assert loaded.info.package_version == cs.__version__
    assert loaded.hash == tiny_model.hash


def test_hash_changes_when_a_weight_changes(tiny_model):
    before = tiny_model.hash
    with __import__("torch").no_grad():
        next(tiny_model.network.parameters()).add_(1.0)
    assert tiny_model.hash != before


def test_save_leaves_no_temporary_file(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_saved_model_is_readable_by_others(tiny_model, tmp_path):
    import os
    import stat

    previous = os.umask(0o077)  # even under a strict umask, as a shared model file must be
    try:
        path = tiny_model.save(tmp_path / "m.safetensors")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_model_loaded_from_a_file_saves_without_building_its_network(tiny_model, tmp_path):
    path = tiny_model.save(tmp_path / "m.safetensors")
    loaded = cs.load_model(path)
    loaded.info.postprocess["peak_height"] = 0.2  # the README's recipe: a copy of the model
    copy = loaded.save(tmp_path / "copy.safetensors")
    assert loaded._network is None
    assert cs.load_model(copy).info.postprocess["peak_height"] == 0.2
    assert cs.load_model(copy).state_arrays().keys() == loaded.state_arrays().keys()


def test_a_missing_model_file_is_one_sentence(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        Model.load(tmp_path / "absent.safetensors")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="not a cellseg-hcs model file"):
        cs.load_model(junk)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(foreign))
    with pytest.raises(ModelError, match="not a cellseg-hcs model"):
        cs.load_model(foreign)


def test_an_unknown_name_lists_the_built_in_models():
    with pytest.raises(ModelError, match="'mitochondria' is neither a built-in model.*nuclei"):
        cs.load_model("mitochondria")


def test_the_built_in_model_ships_in_the_package_and_is_small():
    from cellseg_hcs.model.architectures import builtin_model_path

    path = builtin_model_path("nuclei")
    assert path.is_file()
    assert path.stat().st_size < 20 * 1024 * 1024
    model = cs.load_model("nuclei")
    assert model.info.object_name == "Nuclei"
    assert model.info.training.get("command"), "the model card needs the training command"


def test_a_folder_named_like_a_built_in_model_does_not_hide_it(tmp_path, monkeypatch, tiny_model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nuclei").mkdir()  # e.g. the output folder of an earlier `segment --out nuclei`
    assert cs.load_model("nuclei").info.object_name == "Nuclei"
    tiny_model.save(tmp_path / "mine")  # a model file of that kind of name is still reachable
    assert cs.load_model("./mine").hash == tiny_model.hash


def test_a_model_from_a_newer_version_is_one_sentence(tiny_model, tmp_path):
    import json

    from safetensors import safe_open

    from cellseg_hcs.model.model import METADATA_KEY

    path = tiny_model.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    raw = json.loads(metadata[METADATA_KEY])
    raw["calibration"] = {"added": "later"}
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps(raw)})
    with pytest.raises(ModelError, match="newer cellseg-hcs.*calibration"):
        cs.load_model(path)


def test_the_server_reads_a_built_in_name_as_load_model_does(tmp_path, monkeypatch):
    from cellseg_hcs.serve.engine import _model_key

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nuclei").mkdir()
    assert _model_key("nuclei") == ("builtin", "nuclei")
    assert _model_key("./nuclei")[0] == "file"

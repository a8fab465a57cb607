"""One settings type for a field: validated once, the same defaults on every face."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellseg_hcs.errors import SettingError
from cellseg_hcs.settings import DEFAULTS, ChannelChoice, FieldSettings


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        ({"diameter": 0}, "diameter must be a number of pixels from 1 to 10000, not 0."),
        ({"diameter": "big"}, "diameter must be a number of pixels, 'auto' or 'native', not"),
        ({"tile_size": 10}, "tile size 10 must be a whole number of pixels from 32 to 16384."),
        ({"tile_size": 512.0}, "tile size 512.0 must be a whole number"),
        ({"batch_size": 0}, "batch size 0 must be a whole number from 1 to 256."),
        ({"overlap": 600}, "overlap 600 must be a whole number of pixels from 0 to 511."),
        ({"foreground_threshold": 1.5}, "probability threshold 1.5 must lie between 0 and 1."),
        ({"min_size": True}, "minimum size True must be a whole number"),
        ({"backend": "cuda"}, "backend 'cuda' is not one of auto, tensorrt, torch, onnxruntime."),
        ({"device": "tpu"}, "device 'tpu' is not one of auto, cpu, cuda, cuda:N."),
        ({"precision": "int8"}, "precision 'int8' is not one of fp32, fp16, bf16."),
        ({"probabilities": "yes"}, "probabilities 'yes' must be true or false."),
        ({"postprocess": {"seeds": "x", "peek": 1}}, "unknown post-processing setting(s) peek"),
        ({"model": ""}, "the model must be a built-in model name or a model file path."),
        ({"channel": [1.5]}, "channel 1.5 must be an index, a name, or a list of them."),
    ],
)
def test_each_bad_value_is_one_sentence_naming_the_setting(bad, sentence):
    with pytest.raises(SettingError) as caught:
        FieldSettings(**bad)
    assert sentence in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_request_with_an_unknown_setting_names_it_and_the_known_ones():
    with pytest.raises(SettingError, match="unknown setting.*colour.*known: model, channel"):
        FieldSettings.from_mapping({"colour": "blue"})
    with pytest.raises(SettingError, match="JSON object"):
        FieldSettings.from_mapping([])


def test_values_are_normalized_once():
    settings = FieldSettings(channel="DNA,1", diameter="45", device="auto")
    assert settings.channel == (ChannelChoice("DNA", "name"), ChannelChoice("1", "auto"))
    assert settings.diameter == 45.0 and settings.device is None
    assert FieldSettings(diameter="native").diameter is None
    assert FieldSettings(device="cuda:1").device == "cuda:1"


def test_settings_survive_a_round_trip_through_json():
    import json

    settings = FieldSettings(channel=["DNA"], diameter=30, tile_size=512, min_size=5)
    again = FieldSettings.from_mapping(json.loads(json.dumps(settings.to_dict())))
    assert again == settings


def test_a_channel_text_is_a_name_where_the_field_has_one_else_an_index():
    names = ["0", "DNA", "Actin"]
    assert ChannelChoice.parse("0").resolve(names) == 0  # the channel named "0"
    assert ChannelChoice.parse("2").resolve(names) == 2
    assert ChannelChoice(2, "index").resolve(names) == 2
    with pytest.raises(SettingError, match="channel 'Tubulin' is not in plate p"):
        ChannelChoice.parse("Tubulin").resolve(names, "plate p")
    with pytest.raises(SettingError, match="channel 5 asked for, but the image has 3 channel"):
        ChannelChoice.parse("5").resolve(names)
    with pytest.raises(SettingError, match="'2' is not in"):
        ChannelChoice("2", "name").resolve(names)


def test_the_cli_declares_its_options_and_defaults_from_the_settings():
    from cellseg_hcs.cli import main

    for command in ("segment", "run"):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        for option in ("--diameter", "--tile-size", "--batch-size", "--precision", "--device"):
            assert option in help_text, (command, option)
        assert "default: auto" in help_text  # the diameter: "auto" on every face
        assert f"default: {DEFAULTS.tile_size}" in help_text


def test_the_cellprofiler_module_defaults_are_the_settings_defaults():
    """The plugin cannot import cellseg_hcs (it may run where it is not installed), so it
    repeats the defaults; they must agree."""
    source = Path(__file__).parent.parent / "plugins" / "runcellseghcs.py"
    constants = {
        node.targets[0].id: node.value
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(constants["DEFAULT_TILE_SIZE"]) == DEFAULTS.tile_size
    assert ast.literal_eval(constants["DEFAULT_BATCH_SIZE"]) == DEFAULTS.batch_size
    assert constants["DEFAULT_SIZE_CHOICE"].id == "SIZE_MEASURED" and DEFAULTS.diameter == "auto"


def test_the_plate_run_and_the_server_default_to_the_same_settings():
    import inspect

    from cellseg_hcs.plate.run import run_plate
    from cellseg_hcs.segment import segment_files

    for function in (run_plate, segment_files):
        parameters = inspect.signature(function).parameters
        assert "settings" in parameters
        assert not {"diameter", "backend", "device", "channel"} & set(parameters)

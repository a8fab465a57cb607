"""Options the commands share, declared from :class:`~cellseg_hcs.settings.FieldSettings`.

A command lists the settings it offers (:func:`settings_options`); their names, help and
defaults come from the settings' fields, so the CLI, the Python API, the server and the
CellProfiler module never drift apart. :func:`field_settings` builds the settings back from
a command's arguments, validated once (a bad value is one sentence and exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click

from ..settings import CELL_METHOD_NAMES, CellSettings, FieldSettings

_FIELDS = {f.name: f for f in fields(FieldSettings)}
# How each setting is spelled on the command line, where it is not --name-with-dashes.
_FLAGS = {"model": ("--model", "-m"), "channel": ("--channel", "-c")}
_TYPES = {
    "tile_size": int,
    "overlap": int,
    "batch_size": int,
    "flips": int,
    "min_size": int,
    "foreground_threshold": float,
}


# The field settings the image commands (segment, run) offer, in the order --help lists them.
FIELD_OPTIONS = (
    "model",
    "channel",
    "diameter",
    "backend",
    "device",
    "precision",
    "tile_size",
    "overlap",
    "batch_size",
    "flips",
    "foreground_threshold",
    "min_size",
)


def _default(name: str) -> Any:
    spec = _FIELDS[name]
    value = spec.default_factory() if spec.default is MISSING else spec.default
    return None if value == () else value  # channel lists: not given means "the default"


def setting_option(name: str, **overrides: Any) -> Callable:
    """The click option of one setting (help, default and spelling from the settings)."""
    spec = _FIELDS[name]
    default = _default(name)
    if isinstance(default, bool):
        flag = name.replace("_", "-")
        declared = (f"--{flag}/--no-{flag}", name)
    else:
        declared = (*_FLAGS.get(name, (f"--{name.replace('_', '-')}",)), name)
    options: dict[str, Any] = {
        "default": default,
        "show_default": default is not None and default != "",
        "help": spec.metadata["help"],
    }
    if name in _TYPES:
        options["type"] = _TYPES[name]
    if "metavar" in spec.metadata:
        options["metavar"] = spec.metadata["metavar"]
    options.update(overrides)
    return click.option(*declared, **options)


def settings_options(*names: str) -> Callable:
    """Decorate a command with the options of these settings, in this order."""

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            command = setting_option(name)(command)
        return command

    return decorate


def field_settings(arguments: dict[str, Any], **fixed: Any) -> FieldSettings:
    """The settings from a command's arguments: the setting options are taken out of
    ``arguments`` (what remains is the command's own), ``fixed`` added."""
    given = {name: arguments.pop(name) for name in list(arguments) if name in _FIELDS}
    given = {name: value for name, value in given.items() if value is not None or name == "device"}
    cells = {
        key: arguments.pop(option) for option, key in _CELL_OPTIONS.items() if option in arguments
    }
    if cells.get("channel") is not None:
        given["cells"] = {key: value for key, value in cells.items() if value is not None}
    elif any(value not in (None, False, CellSettings().method) for value in cells.values()):
        from ..errors import SettingError

        raise SettingError(
            "--cells-method, --cells-model and --discard-border need --cells-channel."
        )
    return FieldSettings(**given, **fixed)


# The cell options of a command, and the CellSettings field each sets.
_CELL_OPTIONS = {
    "cells_channel": "channel",
    "cells_method": "method",
    "cells_model": "model",
    "discard_border": "discard_border",
}


def cells_options(command: Callable) -> Callable:
    """The options that grow cells (and cytoplasm) from the nuclei on a cell stain."""
    default = CellSettings()
    for option in reversed(
        [
            click.option(
                "--cells-channel",
                default=None,
                help="Grow each nucleus into its cell on this channel (a cytoplasm, membrane "
                "or actin stain; index or name), and take the cytoplasm. Default: nuclei only.",
            ),
            click.option(
                "--cells-method",
                type=click.Choice(list(CELL_METHOD_NAMES)),
                default=default.method,
                show_default=True,
                help="CellProfiler's methods: propagation (Propagation), watershed (Watershed - "
                "Image), distance (Distance - N, 10 px); model: a trained cell model.",
            ),
            click.option(
                "--cells-model",
                default=None,
                help="The cell model file of --cells-method model (inputs: cell stain, nuclei).",
            ),
            click.option(
                "--discard-border/--keep-border",
                default=default.discard_border,
                show_default=True,
                help="Drop cells touching the field's border, with their nuclei.",
            ),
        ]
    ):
        command = option(command)
    return command


def _verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value:
        level = logging.INFO if value == 1 else logging.DEBUG
        logging.getLogger().setLevel(level)
        logging.getLogger("cellseg_hcs").setLevel(level)
    return value


verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    is_eager=True,
    callback=_verbosity,
    help="More log output (-v info, -vv debug); also before the command.",
)
progress_option = click.option(
    "--progress/--no-progress", default=True, help="Show a progress bar."
)

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

from ..settings import FieldSettings

_FIELDS = {f.name: f for f in fields(FieldSettings)}
# How each setting is spelled on the command line, where it is not --name-with-dashes.
_FLAGS = {"model": ("--model", "-m"), "channel": ("--channel", "-c")}
_TYPES = {"tile_size": int, "overlap": int, "batch_size": int, "min_size": int}


def _default(name: str) -> Any:
    spec = _FIELDS[name]
    value = spec.default_factory() if spec.default is MISSING else spec.default
    if name == "channel":
        return None
    return value


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
    return FieldSettings(**given, **fixed)


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

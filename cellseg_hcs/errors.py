"""Exceptions a user can meet; each carries one sentence naming what is at fault."""


class CellSegError(Exception):
    """Base class: the CLI prints the message and exits with code 2, with no traceback."""


class InputError(CellSegError):
    """An input file, folder or plate cannot be read or is not what was expected."""


class ModelError(CellSegError):
    """A model name or file is unknown or not a cellseg-hcs model."""


class BackendUnavailable(CellSegError):
    """An inference backend was asked for but cannot run here."""


class SettingError(CellSegError):
    """A setting (channel, well, threshold...) does not fit the input."""

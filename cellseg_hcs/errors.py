"""Exceptions a user can meet; each carries one sentence naming what is at fault."""


class CellSegError(Exception):
    """Base class: the CLI prints the message and exits with ``exit_code``, no traceback."""

    exit_code = 2


class InputError(CellSegError):
    """An input file, folder or plate cannot be read or is not what was expected."""


class ModelError(CellSegError):
    """A model name or file is unknown or not a cellseg-hcs model."""


class BackendUnavailable(CellSegError):
    """An inference backend was asked for but cannot run here."""


class SettingError(CellSegError):
    """A setting (channel, well, threshold...) does not fit the input."""


class SomeInputsFailed(CellSegError):
    """Some inputs of a batch could not be processed; every other one was (exit code 1).

    ``results`` holds what was done, ``failures`` each failed input with its one sentence.
    """

    exit_code = 1

    def __init__(self, message: str, results: list, failures: list[tuple[object, str]]) -> None:
        super().__init__(message)
        self.results = results
        self.failures = failures

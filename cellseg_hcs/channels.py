"""Which channel of a field: by index, by name, or read from a user's text.

Kept free of any import above it: the settings and the recipe both read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import SettingError

CHANNEL_MODES = ("index", "name", "auto")


@dataclass(frozen=True)
class ChannelChoice:
    """One channel of a field: by index (0-based), by name, or ``auto``.

    ``auto`` is how a user's text is read: a channel of that exact name if the field has one,
    otherwise digits are an index (``--channel 0``). Give ``by`` to say which you mean.

    Examples
    --------
    >>> ChannelChoice.parse("1").resolve(["DNA", "Actin"])
    1
    >>> ChannelChoice.parse("Actin").resolve(["DNA", "Actin"])
    1
    >>> ChannelChoice(0, by="index").resolve(["DNA"], where="image a.tif")
    0
    """

    value: int | str
    by: str = "auto"

    def __post_init__(self) -> None:
        if self.by not in CHANNEL_MODES:
            raise SettingError(
                f"channel mode {self.by!r} is not one of {', '.join(CHANNEL_MODES)}."
            )
        if isinstance(self.value, bool) or not isinstance(self.value, (int, str)):
            raise SettingError(f"channel {self.value!r} must be an index or a name.")
        if self.by == "index" and not _is_index(self.value):
            raise SettingError(f"channel index {self.value!r} must be a whole number from 0.")
        if isinstance(self.value, str) and not self.value.strip():
            raise SettingError("a channel name cannot be empty.")

    @classmethod
    def parse(cls, value: ChannelChoice | int | str) -> ChannelChoice:
        """A channel as users give it: an int is an index, a text is read ``auto``."""
        if isinstance(value, ChannelChoice):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, "index")
        if isinstance(value, str) and not value.strip().isdigit():
            return cls(value.strip(), "name")
        return cls(value.strip() if isinstance(value, str) else value, "auto")

    def resolve(self, names: Sequence[str], where: str = "the image") -> int:
        """The index of this channel among ``names``, or one sentence saying why not."""
        names = list(names)
        if self.by != "index" and str(self.value) in names:
            return names.index(str(self.value))
        if self.by != "name" and _is_index(self.value):
            index = int(self.value)
            if index < len(names):
                return index
            raise SettingError(
                f"channel {index} asked for, but {where} has {len(names)} channel(s) "
                f"({', '.join(names)})."
            )
        raise SettingError(
            f"channel {self.value!r} is not in {where}; its channels are {', '.join(names)}."
        )


def _is_index(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()


def parse_channels(value: Any) -> tuple[ChannelChoice, ...]:
    """A channel option as users give it (None, one channel, or several, also ``"A,B"``)."""
    if value is None or value == "" or value == ():
        return ()
    if isinstance(value, (ChannelChoice, int)) and not isinstance(value, bool):
        return (ChannelChoice.parse(value),)
    if isinstance(value, str):
        return tuple(ChannelChoice.parse(part) for part in value.split(",") if part.strip())
    if isinstance(value, Mapping) and set(value) == {"value", "by"}:  # as to_dict wrote it
        return (ChannelChoice(value["value"], value["by"]),)
    if isinstance(value, Sequence):
        return tuple(choice for item in value for choice in parse_channels(item))
    raise SettingError(f"channel {value!r} must be an index, a name, or a list of them.")

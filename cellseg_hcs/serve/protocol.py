"""The wire format between ``cellseg-hcs serve`` and its clients (standard library + numpy only).

One request and one reply per connection. Each message is::

    b"CSH1"  uint32 big-endian header length  JSON header (UTF-8)  array bytes ...

The header names the arrays that follow (``{"name", "dtype", "shape"}``, C order,
little-endian), in order. A request header carries ``token``, ``op`` (``"segment"`` or
``"info"``) and ``options``; a reply header carries ``ok`` and either the arrays or
``error``, one sentence for the user.

Every length is checked against a limit before anything is read, so a client (or a stray
program) cannot make the other side allocate more than ``max_bytes``. The CellProfiler plugin
(``plugins/runcellseghcs.py``) carries its own copy of this format, because it must work where
``cellseg_hcs`` cannot be imported; the tests run both against the real server.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import numpy as np

MAGIC = b"CSH1"
PREFIX = struct.Struct(">4sI")
MAX_HEADER_BYTES = 64 * 1024
# 5k x 5k float64 is 200 MB; 512 MiB leaves room for multi-channel fields.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
ARRAY_DTYPES = frozenset({"|u1", "<u2", "<u4", "<i2", "<i4", "<f4", "<f8", "|b1"})


class ProtocolError(Exception):
    """A message that does not follow the format (or that breaks a limit)."""


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> list[bytes]:
    """The pieces of one message: prefix + header, then each array's bytes.

    Arrays are sent little-endian and C-contiguous; their descriptions are added to the header.
    """
    arrays = arrays or {}
    described = []
    payloads = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        described.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        payloads.append(memoryview(array).cast("B"))
    body = json.dumps({**header, "arrays": described}).encode()
    if len(body) > MAX_HEADER_BYTES:
        raise ProtocolError(f"message header of {len(body)} bytes is over the limit.")
    return [PREFIX.pack(MAGIC, len(body)) + body, *payloads]


def send(
    sock: socket.socket, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> None:
    """Write one message to a connected socket."""
    for piece in encode(header, arrays):
        sock.sendall(piece)


def receive_header(sock: socket.socket) -> dict[str, Any]:
    """Read and check the prefix and JSON header of one message."""
    magic, length = PREFIX.unpack(_read_exactly(sock, PREFIX.size))
    if magic != MAGIC:
        raise ProtocolError("not a cellseg-hcs message (bad magic bytes).")
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"message header of {length} bytes is over the limit.")
    try:
        header = json.loads(_read_exactly(sock, length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("message header is not valid JSON.") from exc
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a JSON object.")
    return header


def array_specs(header: dict[str, Any], max_bytes: int) -> list[tuple[str, np.dtype, tuple]]:
    """The arrays a header announces, each checked (dtype, shape, total size)."""
    specs = header.get("arrays", [])
    if not isinstance(specs, list):
        raise ProtocolError("'arrays' in the header is not a list.")
    checked = []
    total = 0
    for spec in specs:
        try:
            name, dtype, shape = str(spec["name"]), str(spec["dtype"]), spec["shape"]
        except (KeyError, TypeError) as exc:
            raise ProtocolError("an array description lacks name, dtype or shape.") from exc
        if dtype not in ARRAY_DTYPES:
            raise ProtocolError(f"array {name!r} has unsupported dtype {dtype!r}.")
        smallest = 0 if isinstance(shape, list) and len(shape) == 1 else 1  # a list of
        if (  # parents may be empty (a field without micronuclei); an image may not
            not isinstance(shape, list)
            or not 1 <= len(shape) <= 4
            or not all(isinstance(n, int) and smallest <= n < 2**31 for n in shape)
        ):
            raise ProtocolError(f"array {name!r} has an invalid shape {shape!r}.")
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if total > max_bytes:
            raise ProtocolError(f"the arrays are over the {max_bytes}-byte limit of this server.")
        checked.append((name, np.dtype(dtype), tuple(shape)))
    return checked


def receive_arrays(
    sock: socket.socket, specs: list[tuple[str, np.dtype, tuple]]
) -> dict[str, np.ndarray]:
    """Read the arrays announced by :func:`array_specs`."""
    arrays = {}
    for name, dtype, shape in specs:
        array = np.empty(shape, dtype=dtype)
        _read_into(sock, memoryview(array).cast("B"))
        arrays[name] = array
    return arrays


def receive(
    sock: socket.socket, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one whole message: header and arrays."""
    header = receive_header(sock)
    return header, receive_arrays(sock, array_specs(header, max_bytes))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    _read_into(sock, memoryview(buffer))
    return bytes(buffer)


def _read_into(sock: socket.socket, view: memoryview) -> None:
    done = 0
    while done < len(view):
        got = sock.recv_into(view[done:], min(len(view) - done, 1 << 20))
        if got == 0:
            raise ProtocolError("the connection closed in the middle of a message.")
        done += got

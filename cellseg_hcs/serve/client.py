"""A client for ``cellseg-hcs serve`` (standard library + numpy; no torch needed to call it)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellSegError
from . import protocol


class ServerError(CellSegError):
    """The server could not be reached, or it refused or failed the request."""


class Client:
    """Send images to a running ``cellseg-hcs serve`` and get labels back.

    Parameters
    ----------
    connection_file:
        The file the server wrote (default: ``$CELLSEG_HCS_SERVER_FILE`` or
        ``~/.cache/cellseg-hcs/serve.json``); it gives host, port and token.
    host, port, token:
        Given directly instead of through the connection file.
    timeout:
        Seconds to wait for a reply (segmenting a large field on a CPU takes a while).

    Examples
    --------
    >>> client = Client()  # doctest: +SKIP
    >>> client.segment(image, model="nuclei")["labels"].max()  # doctest: +SKIP
    """

    def __init__(
        self,
        connection_file: str | Path | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        if host is None or port is None or token is None:
            from .server import default_connection_file

            path = Path(connection_file) if connection_file else default_connection_file()
            try:
                details = json.loads(path.read_text())
            except FileNotFoundError:
                raise ServerError(
                    f"{path}: no connection file; start the server with `cellseg-hcs serve`."
                ) from None
            except (OSError, ValueError) as exc:
                raise ServerError(f"{path}: not a readable connection file ({exc}).") from exc
            host = host or details.get("host")
            port = port or details.get("port")
            token = token or details.get("token")
        self.host, self.port, self.token = str(host), int(port), str(token)
        self.timeout = timeout

    def request(
        self,
        op: str,
        options: dict[str, Any] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One raw request: ``(reply header, reply arrays)``; raises :class:`ServerError`."""
        header = {"token": self.token, "op": op, "options": options or {}}
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ServerError(
                f"no cellseg-hcs server at {self.host}:{self.port} ({exc}); is it running?"
            ) from exc
        with sock:
            try:
                protocol.send(sock, header, arrays)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server refused early; its reply says why
            try:
                reply, result = protocol.receive(sock, max_bytes=1 << 40)
            except (OSError, protocol.ProtocolError) as exc:
                raise ServerError(
                    f"the server at {self.host}:{self.port} gave no reply ({exc})."
                ) from exc
        if not reply.get("ok"):
            raise ServerError(f"the server refused the request: {reply.get('error')}")
        return reply, result

    def segment(self, image: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        """Labels (and ``probabilities`` if asked for) for one image; options as
        :class:`~cellseg_hcs.settings.FieldSettings`. A model with more object sets adds
        their labels and each of their objects' parent among the model's own
        (``micronuclei`` and ``micronuclei_parents``; ``cells`` and ``cells_parents``)."""
        return self.request("segment", options, {"image": np.asarray(image)})[1]

    def info(self, model: str | None = None) -> dict[str, Any]:
        """The served model's source, hash and object name, and the server's version."""
        return self.request("info", {"model": model} if model else {})[0]["info"]

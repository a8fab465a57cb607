"""``cellseg-hcs serve``: one warm model answering many local clients (CellProfiler workers).

The server listens on 127.0.0.1 by default, on a free port, and writes the port and a random
token to a connection file only the user can read (``~/.cache/cellseg-hcs/serve.json``,
mode 0600). A client must send that token with every request; any other request, a wrong
token, bytes that are not a request, an array of the wrong shape, dtype or size, gets an
error reply and the server carries on. Requests are read on their own threads, while
predictions run one at a time, so all clients share one model (and one GPU).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellSegError, SettingError
from ..io.atomic import write_atomic_json
from ..settings import FieldSettings
from . import protocol
from .engine import Segmenter

log = logging.getLogger(__name__)

HEADER_SECONDS = 10.0  # all of a request's header must arrive within this
MAX_OPEN_CONNECTIONS = 64  # connections at once, authenticated or not

CONNECTION_FILE_ENV = "CELLSEG_HCS_SERVER_FILE"


def default_connection_file() -> Path:
    """``$CELLSEG_HCS_SERVER_FILE``, else ``~/.cache/cellseg-hcs/serve.json``."""
    override = os.environ.get(CONNECTION_FILE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "cellseg-hcs" / "serve.json"


def write_connection_file(path: Path, details: dict[str, Any]) -> Path:
    """Write the connection details readable by this user only (0600; folder 0700), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return write_atomic_json(path, details, mode=0o600)


class SegmentServer(socketserver.ThreadingTCPServer):
    """The TCP server; see the module docstring. Use :meth:`start` and :meth:`close`.

    Parameters
    ----------
    segmenter:
        Holds the warm model(s); ``default_model`` is loaded before the first request.
    host, port:
        Where to listen; port 0 picks a free port (see :attr:`port`).
    token:
        The secret clients must send; a random one when None.
    max_bytes:
        The largest image (in bytes) a request may carry.
    max_connections:
        Requests whose images are held in memory at once (read, queued for the model, or
        being predicted); later ones wait, having sent only their checked header, for up to
        ``queue_timeout`` seconds, then get a "busy" reply.
    timeout:
        Seconds a client may take to send its request.
    queue_timeout:
        Seconds a checked request may wait for a free slot.

    Examples
    --------
    >>> server = SegmentServer(Segmenter()).start()  # doctest: +SKIP
    >>> server.write_connection_file()  # doctest: +SKIP
    >>> server.close()  # doctest: +SKIP
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        default_model: str = "nuclei",
        device: str = "auto",
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_bytes: int = protocol.DEFAULT_MAX_BYTES,
        max_connections: int = 8,
        timeout: float = 60.0,
        queue_timeout: float = 600.0,
    ) -> None:
        self.segmenter = segmenter
        self.default_model = default_model
        self.device = device
        self.token = token or secrets.token_urlsafe(32)
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout
        self.queue_timeout = queue_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self.connection_file: Path | None = None
        self._thread: threading.Thread | None = None
        self.images_served = 0
        self._count_lock = threading.Lock()
        # Every connection holds a thread from its first byte, before its token is checked:
        # cap them, and give each client HEADER_SECONDS in all to send its header, so slow
        # or silent clients cannot tie the server up.
        self._open_connections = threading.BoundedSemaphore(MAX_OPEN_CONNECTIONS)
        self._held: dict[int, threading.BoundedSemaphore] = {}  # by request: what it took
        super().__init__((host, port), _RequestHandler)

    def process_request(self, request, client_address) -> None:
        slots = self._open_connections
        if not slots.acquire(blocking=False):
            log.info(
                "refused %s: %d connections already open", client_address, MAX_OPEN_CONNECTIONS
            )
            self.shutdown_request(request)
            return
        self._held[id(request)] = slots
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:  # the semaphore this connection took, even if the cap was changed since
            self._held.pop(id(request), self._open_connections).release()

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def details(self) -> dict[str, Any]:
        """What a client needs to connect: host, port, token (and what is served)."""
        from .. import __version__

        return {
            "host": self.host,
            "port": self.port,
            "token": self.token,
            "model": self.default_model,
            "device": self.device,
            "pid": os.getpid(),
            "version": __version__,
        }

    def write_connection_file(self, path: str | Path | None = None) -> Path:
        """Write :meth:`details` to the connection file (only the user can read it)."""
        self.connection_file = write_connection_file(
            Path(path) if path else default_connection_file(), self.details()
        )
        return self.connection_file

    def start(self) -> SegmentServer:
        """Serve on a background thread (for tests and embedding); returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            name="cellseg-hcs-serve",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the socket, and remove the connection file if it is still ours."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()
        if self.connection_file is not None:
            try:
                if json.loads(self.connection_file.read_text()).get("token") == self.token:
                    self.connection_file.unlink()
            except (OSError, ValueError):
                pass
            self.connection_file = None

    def __enter__(self) -> SegmentServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ one request
    def answer(self, sock: socket.socket) -> None:
        """Read one request from a connected socket and send one reply; never raises."""
        started = time.perf_counter()
        try:
            reply, arrays = self._reply_to(sock)
        except (TimeoutError, ConnectionError) as exc:
            log.info("client dropped: %s", exc)
            return
        reply["seconds"] = round(time.perf_counter() - started, 4)
        try:
            protocol.send(sock, reply, arrays)
        except (OSError, protocol.ProtocolError) as exc:
            log.info("could not send the reply: %s", exc)
            return
        if not reply["ok"]:
            _drain(sock)

    def _reply_to(self, sock: socket.socket) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        try:
            header = _receive_header_within(sock, HEADER_SECONDS)
            if not hmac.compare_digest(str(header.get("token", "")).encode(), self.token.encode()):
                return _error(
                    "wrong or missing token: read it from the server's connection file."
                ), {}
            op = header.get("op")
            if op not in ("segment", "info"):
                return _error(f"unknown request {op!r}; this server answers segment and info."), {}
            specs = protocol.array_specs(header, self.max_bytes)
            raw = header.get("options", {})
            raw = {
                "model": self.default_model,
                "device": self.device,
                **(raw if isinstance(raw, dict) else {"options": raw}),
            }
            options = FieldSettings.from_mapping(raw)
            if op == "info":
                if specs:
                    raise SettingError("an info request carries no arrays.")
                return {
                    "ok": True,
                    "info": {
                        **self.segmenter.describe(options.model),
                        "device": options.device,
                        "images_served": self.images_served,
                    },
                }, {}
            if [name for name, _, _ in specs] != ["image"]:
                raise SettingError("a segment request carries exactly one array, 'image'.")
            # Only checked requests from token holders queue here, so memory stays bounded.
            if not self.slots.acquire(timeout=self.queue_timeout):
                return _error("the server is busy; try again later."), {}
            try:
                image = protocol.receive_arrays(sock, specs)["image"]
                result = self.segmenter.segment(image, options)
            finally:
                self.slots.release()
            with self._count_lock:
                self.images_served += 1
            return {"ok": True}, result
        except protocol.ProtocolError as exc:
            return _error(str(exc)), {}
        except CellSegError as exc:
            return _error(str(exc)), {}
        except (TimeoutError, ConnectionError):
            raise
        except Exception as exc:  # noqa: BLE001 - the server outlives any one bad request
            log.exception("request failed")
            return _error(f"the server failed on this request ({type(exc).__name__}: {exc})."), {}


class _RequestHandler(socketserver.BaseRequestHandler):
    server: SegmentServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.timeout_seconds)
        self.server.answer(sock)


def _receive_header_within(sock: socket.socket, seconds: float) -> dict[str, Any]:
    """The request header, or the connection cut when it has not all come in ``seconds``
    (the socket's own timeout holds for each read, not for the whole header)."""

    def cut() -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    deadline = threading.Timer(seconds, cut)
    deadline.daemon = True
    deadline.start()
    try:
        return protocol.receive_header(sock)
    finally:
        deadline.cancel()


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _drain(sock: socket.socket, seconds: float = 2.0, limit: int = 64 << 20) -> None:
    """Read what the client still sends (briefly), so closing does not reset the connection
    before the client has read the error reply."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        deadline = time.monotonic() + seconds
        read = 0
        while time.monotonic() < deadline and read < limit:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            read += len(chunk)
    except OSError:
        return


def serve(
    model: str = "nuclei",
    *,
    device: str = "auto",
    host: str = "127.0.0.1",
    port: int = 0,
    connection_file: str | Path | None = None,
    max_bytes: int = protocol.DEFAULT_MAX_BYTES,
    warm_up: bool = True,
) -> None:
    """Run the server until interrupted (Ctrl-C or SIGTERM); the CLI's ``serve`` command.

    The model is loaded (and, with ``warm_up``, run once) before the connection file is
    written, so a client that finds the file finds a ready server.
    """
    import signal

    segmenter = Segmenter()
    options = FieldSettings(model=model, device=device)
    info = segmenter.describe(model)
    if warm_up:
        segmenter.segment(np.zeros((256, 256), np.float32), options)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s: any machine that reaches this port and holds the token "
            "can use the model; the token travels unencrypted.",
            host,
        )
    server = SegmentServer(
        segmenter, default_model=model, device=device, host=host, port=port, max_bytes=max_bytes
    )
    path = server.write_connection_file(connection_file)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"cellseg-hcs serve: model {model} ({info['hash']}) on {server.host}:{server.port}; "
        f"connection file {path}. Ctrl-C stops.",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        print("cellseg-hcs serve: stopped.", flush=True)

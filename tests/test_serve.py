"""``cellseg-hcs serve``: real sockets on 127.0.0.1, a tiny model, every server shut down.

The server must answer every request, good or bad, with a reply, and keep serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from cellseg_hcs.errors import SettingError
from cellseg_hcs.serve import (
    Client,
    Segmenter,
    SegmentServer,
    ServerError,
    protocol,
)
from cellseg_hcs.settings import FieldSettings


@pytest.fixture
def tiny_model():
    """A hand-set model that labels exactly the bright disks, so labels have objects to
    compare (a random network finds none at the default thresholds)."""
    from plate_helpers import threshold_model

    return threshold_model()


@pytest.fixture
def model_file(tiny_model, tmp_path):
    return str(tiny_model.save(tmp_path / "tiny.safetensors"))


@pytest.fixture
def image():
    from plate_helpers import disk_field

    return disk_field(0, 5, shape=(96, 80))


@pytest.fixture
def server(model_file, tmp_path):
    with SegmentServer(
        Segmenter(), default_model=model_file, timeout=2.0, max_connections=2
    ).start() as running:
        running.write_connection_file(tmp_path / "cache" / "serve.json")
        yield running


@pytest.fixture
def client(server):
    return Client(server.connection_file, timeout=30)


def raw_exchange(server, data: bytes) -> dict:
    """Send raw bytes, half-close, and read the server's reply header."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return protocol.receive(sock)[0]


def request_bytes(header: dict, arrays: dict | None = None) -> bytes:
    return b"".join(bytes(piece) for piece in protocol.encode(header, arrays))


def assert_still_serving(client, image):
    assert client.segment(image)["labels"].shape == image.shape


def test_labels_over_the_socket_equal_model_segment(client, tiny_model, image):
    labels = client.segment(image)["labels"]
    expected = tiny_model.segment(image, diameter=None)
    assert expected.max() == 5  # the five disks: there is something to compare
    assert labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)


def test_probabilities_come_back_only_when_asked_for(client, tiny_model, image):
    assert set(client.segment(image)) == {"labels"}
    result = client.segment(image, probabilities=True)
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(
        result["probabilities"], tiny_model.predict_maps(image)[0], atol=1e-6
    )


def test_threshold_and_size_overrides_reach_the_post_processing(client, tiny_model, image):
    # The disks are ~113 px: a minimum size of 200 removes all five, so a dropped
    # override would show.
    assert client.segment(image)["labels"].max() == 5
    result = client.segment(image, foreground_threshold=0.3, min_size=200)["labels"]
    assert result.max() == 0
    np.testing.assert_array_equal(
        result, tiny_model.segment(image, foreground_threshold=0.3, min_size=200)
    )


def test_server_listens_on_loopback_by_default(server):
    assert server.host == "127.0.0.1"


def test_connection_file_is_readable_by_the_user_only(server):
    path = server.connection_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    details = json.loads(path.read_text())
    assert (details["host"], details["port"], details["token"]) == (
        server.host,
        server.port,
        server.token,
    )


def test_connection_file_rewrite_tightens_loose_permissions(server, tmp_path):
    path = tmp_path / "loose.json"
    path.write_text("{}")
    path.chmod(0o644)
    server.write_connection_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_token_is_refused_and_the_server_keeps_serving(server, client, image):
    intruder = Client(host=server.host, port=server.port, token="guess", timeout=30)
    with pytest.raises(ServerError, match="wrong or missing token"):
        intruder.segment(image)
    assert_still_serving(client, image)


def test_request_without_token_is_refused(server):
    reply = raw_exchange(server, request_bytes({"op": "info"}))
    assert reply["ok"] is False and "token" in reply["error"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(range(256)) * 4,
        b"CSH1" + struct.pack(">I", 5) + b"{nope",
    ],
)
def test_garbage_bytes_get_an_error_reply(server, client, image, garbage):
    reply = raw_exchange(server, garbage)
    assert reply["ok"] is False
    assert_still_serving(client, image)


def test_oversized_header_is_refused_before_it_is_read(server):
    reply = raw_exchange(server, b"CSH1" + struct.pack(">I", 1 << 30))
    assert reply["ok"] is False and "over the limit" in reply["error"]


def test_image_over_the_size_limit_is_refused(model_file, tmp_path, image):
    with SegmentServer(Segmenter(), default_model=model_file, max_bytes=1000).start() as small:
        small_client = Client(host=small.host, port=small.port, token=small.token, timeout=30)
        with pytest.raises(ServerError, match="limit"):
            small_client.segment(image)
        assert small_client.info()["model"] == model_file


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ([{"name": "image", "dtype": "<c8", "shape": [8, 8]}], "unsupported dtype"),
        ([{"name": "image", "dtype": "|O", "shape": [8, 8]}], "unsupported dtype"),
        ([{"name": "image", "dtype": "<f4", "shape": [0, 8]}], "invalid shape"),
        ([{"name": "image", "dtype": "<f4", "shape": [8, -8]}], "invalid shape"),
        ([{"name": "image", "dtype": "<f4", "shape": "8x8"}], "invalid shape"),
        ([{"name": "image", "dtype": "<f4"}], "lacks name, dtype or shape"),
        ("image", "not a list"),
    ],
)
def test_bad_array_descriptions_are_refused(server, arrays, message):
    header = {"token": server.token, "op": "segment", "arrays": arrays}
    body = json.dumps(header).encode()
    reply = raw_exchange(server, protocol.PREFIX.pack(protocol.MAGIC, len(body)) + body)
    assert reply["ok"] is False and message in reply["error"]


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (8,)])
def test_images_that_are_not_2d_are_refused(client, shape):
    with pytest.raises(ServerError, match="2-D"):
        client.segment(np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile_size": 3}, "tile size"),
        ({"batch_size": 0}, "batch size"),
        ({"foreground_threshold": 1.5}, "probability threshold"),
        ({"min_size": -1}, "minimum size"),
        ({"device": "tpu"}, "device"),
        ({"diameter": 0}, "diameter"),
        ({"diameter": "big"}, "diameter"),
        ({"colour": "blue"}, "unknown setting"),
        ({"model": "no-such-model"}, "no-such-model"),
    ],
)
def test_bad_options_get_a_sentence_naming_them(client, image, options, message):
    with pytest.raises(ServerError, match=message):
        client.segment(image, **options)


def test_request_cut_off_midway_does_not_stop_the_server(server, client, image):
    pieces = protocol.encode({"token": server.token, "op": "segment"}, {"image": image})
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(pieces[0] + bytes(pieces[1])[:100])
    assert_still_serving(client, image)


def test_silent_client_is_dropped_after_the_timeout(server, client, image):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the server closed it (timeout=2 s) without a reply
    assert_still_serving(client, image)


def test_concurrent_clients_share_one_model(server, client, tiny_model, image):
    expected = tiny_model.segment(image, diameter=None)
    assert expected.max() == 5  # the five disks: there is something to compare
    results: list = [None] * 6

    def work(index: int) -> None:
        results[index] = Client(server.connection_file, timeout=60).segment(image)["labels"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(np.array_equal(result, expected) for result in results)
    assert len(server.segmenter._models) == 1
    assert client.info()["images_served"] == 6


def test_request_waits_for_a_free_slot_then_is_told_the_server_is_busy(model_file, image):
    with SegmentServer(
        Segmenter(), default_model=model_file, max_connections=1, queue_timeout=0.3
    ).start() as server:
        client = Client(host=server.host, port=server.port, token=server.token, timeout=30)
        server.slots.acquire()  # as if another client's image were being predicted
        try:
            with pytest.raises(ServerError, match="busy"):
                client.segment(image)
        finally:
            server.slots.release()
        assert_still_serving(client, image)


def test_info_names_the_served_model(client, model_file, tiny_model):
    info = client.info()
    assert info["model"] == model_file
    assert info["hash"] == tiny_model.hash


def test_close_removes_the_connection_file(model_file, tmp_path):
    server = SegmentServer(Segmenter(), default_model=model_file).start()
    path = server.write_connection_file(tmp_path / "serve.json")
    server.close()
    assert not path.exists()
    with pytest.raises(ServerError, match="no cellseg-hcs server|no connection file"):
        Client(path)


def test_client_without_a_server_says_how_to_start_one(tmp_path):
    with pytest.raises(ServerError, match="cellseg-hcs serve"):
        Client(tmp_path / "absent.json")


def test_client_names_an_address_where_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerError, match=f"127.0.0.1:{port}"):
        Client(host="127.0.0.1", port=port, token="x", timeout=5).info()


@pytest.mark.parametrize(
    "raw", [{"tile_size": 512.0}, {"probabilities": "yes"}, {"min_size": True}, []]
)
def test_request_settings_reject_values_of_the_wrong_type(raw):
    with pytest.raises(SettingError):
        FieldSettings.from_mapping(raw)


def test_serve_command_writes_its_connection_file_and_stops_cleanly_on_sigterm(
    model_file, tmp_path, image
):
    connection_file = tmp_path / "serve.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cellseg_hcs.cli import main; main()",
            "serve",
            "--model",
            model_file,
            "--connection-file",
            str(connection_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not connection_file.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "cellseg-hcs serve did not start in 120 s"
            time.sleep(0.1)
        assert process.poll() is None, process.stdout.read()
        mode = stat.S_IMODE(connection_file.stat().st_mode)
        details = json.loads(connection_file.read_text())
        labels = Client(connection_file, timeout=60).segment(image)["labels"]
        os.kill(process.pid, signal.SIGTERM)
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    output = process.stdout.read()
    assert mode == 0o600
    assert details["host"] == "127.0.0.1" and details["pid"] == process.pid
    assert labels.shape == image.shape
    assert returncode == 0, output
    assert "stopped" in output, output
    assert not connection_file.exists(), output


def test_tile_and_batch_sizes_reach_the_runtime_and_default_to_its_own(
    server, client, image, model_file
):
    from cellseg_hcs.runtime import Runtime

    client.segment(image, tile_size=256, batch_size=2)
    runtime = server.segmenter.model(model_file)._runtime
    assert (runtime.tile_size, runtime.batch_size) == (256, 2)
    client.segment(image)
    runtime = server.segmenter.model(model_file)._runtime
    defaults = Runtime.__init__.__kwdefaults__
    assert (runtime.tile_size, runtime.batch_size) == (
        defaults["tile_size"],
        defaults["batch_size"],
    )


def test_a_client_trickling_its_header_is_cut_at_the_overall_deadline(
    server, client, image, monkeypatch
):
    from cellseg_hcs.serve import server as server_module

    monkeypatch.setattr(server_module, "HEADER_SECONDS", 1.0)
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        closed = False
        for _ in range(40):  # one byte every 0.1 s: each read is quick, the whole is not
            try:
                sock.sendall(b"\x00")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.settimeout(0.01)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                closed = True
                break
    assert closed and time.monotonic() - started < 3.5
    assert_still_serving(client, image)


def test_connections_beyond_the_cap_are_closed_at_once(server, client, image, monkeypatch):
    import threading as threads

    monkeypatch.setattr(server, "_open_connections", threads.BoundedSemaphore(2))
    held = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection((server.host, server.port), timeout=10) as extra:
            extra.settimeout(5)
            assert extra.recv(1) == b""  # closed without a thread of its own
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert_still_serving(client, image)


def test_a_diameter_reaches_the_network_scale(client, tiny_model, image):
    result = client.segment(image, diameter=2.5 * tiny_model.info.working_diameter)["labels"]
    expected = tiny_model.segment(image, diameter=2.5 * tiny_model.info.working_diameter)
    np.testing.assert_array_equal(result, expected)
    native = tiny_model.segment(image, diameter=None)
    assert not np.array_equal(result, native)  # the scale made a difference


def test_diameter_auto_measures_the_objects_and_runs_at_their_scale(client, tiny_model):
    from plate_helpers import disk_field

    from cellseg_hcs.field.pipeline import FieldPipeline

    many_small = disk_field(1, 12, shape=(200, 200))  # 12 disks of 13 px: enlarged ~2.3x
    served = client.segment(many_small, diameter="auto", probabilities=True)
    settings = FieldSettings(diameter="auto", probabilities=True)
    result = FieldPipeline(settings, model=tiny_model).run(many_small)
    assert result.scale > 2
    np.testing.assert_array_equal(served["labels"], result.labels)
    np.testing.assert_allclose(served["probabilities"], result.maps[0], atol=1e-5)
    assert client.segment(many_small)["labels"].max() == result.labels.max()  # auto: default
    native = client.segment(many_small, diameter="native", probabilities=True)["probabilities"]
    assert np.abs(native - served["probabilities"]).max() > 0.05  # the scale made a difference


def test_cells_and_cytoplasm_come_back_beside_the_nuclei(client, image):
    stain = np.where(image > image.mean(), 3 * image, image // 4).astype(image.dtype)
    served = client.segment(
        np.stack([image, stain]), channel=0, cells={"channel": 1, "method": "distance"}
    )
    assert {"labels", "cells", "cytoplasm", "cells_parents", "cytoplasm_parents"} == set(served)
    np.testing.assert_array_equal(served["cells_parents"], np.arange(1, served["cells"].max() + 1))
    assert served["cells"].max() == served["labels"].max() > 0
    assert np.all(served["cells"][served["labels"] > 0] == served["labels"][served["labels"] > 0])


def test_a_field_with_no_cells_comes_back_with_empty_parent_lists(client, image):
    """An empty list of parents travels (a field without micronuclei or cells)."""
    blank = np.zeros_like(image)
    served = client.segment(
        np.stack([blank, blank]), channel=0, cells={"channel": 1, "method": "distance"}
    )
    assert served["labels"].max() == 0
    assert served["cells_parents"].shape == (0,) and served["cytoplasm_parents"].shape == (0,)
    assert_still_serving(client, image)

"""Full batches of tiles across fields: the threads predicting fields share one backend.

A GPU worker predicts several fields at once, one thread each. Cut alone, a 2160 x 2160 field
is 9 tiles: batches of 4, 4 and 1 at batch size 4. :class:`TileBatcher` puts every caller's
tiles in one queue per tile shape and runs the backend on full batches drawn from all of
them, whatever the field size; a batch that cannot fill waits at most ``max_wait`` seconds
for another caller's tiles, and only once callers have been seen to overlap (a single caller,
as in ``cellseg-hcs segment``, never waits).

There is no batching thread: the callers take turns running batches (one at a time, since
one backend runs one batch at a time), each running whichever batch is ready, its own tiles
or another caller's, and each gets its own tiles' predictions back in order. A tile's
prediction does not depend on the other tiles in its batch, so results equal those of
running every field alone.

Examples
--------
>>> batcher = TileBatcher(lambda tiles: [t * 2 for t in tiles], batch_size=4)
>>> [float(x) for x in batcher.run([np.ones(1), np.zeros(1)])]
[2.0, 0.0]
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class _Request:
    """One caller's tiles: their predictions as they arrive, and a failure if one happened."""

    results: list
    remaining: int
    error: BaseException | None = None


@dataclass(eq=False)
class _Tile:
    request: _Request
    index: int
    pixels: np.ndarray
    queued: float = field(default_factory=time.monotonic)


class TileBatcher:
    """Runs tiles through ``run_batch`` in batches of up to ``batch_size`` same-shaped tiles,
    gathered from every thread that calls :meth:`run` at the same time.

    Parameters
    ----------
    run_batch:
        Predictions for a list of same-shaped tiles, one per tile, in order.
    batch_size:
        The most tiles run at once.
    max_wait:
        Seconds a batch that is not full may wait for other callers' tiles (0: never).
    """

    def __init__(
        self,
        run_batch: Callable[[list[np.ndarray]], Sequence[np.ndarray]],
        batch_size: int,
        max_wait: float = 0.0,
    ) -> None:
        self.run_batch = run_batch
        self.batch_size = max(int(batch_size), 1)
        self.max_wait = max(float(max_wait), 0.0)
        self.batch_sizes: Counter[int] = Counter()
        """How many batches of each size were run (for benchmarks and diagnostics)."""
        self._ready = threading.Condition()
        self._queues: dict[tuple[int, ...], deque[_Tile]] = {}
        self._busy = False
        self._callers = 0
        self._overlapped = False

    def run(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Predictions for these tiles, in order (batched with other callers' tiles)."""
        request = _Request([None] * len(tiles), len(tiles))
        if not tiles:
            return []
        with self._ready:
            self._callers += 1
            self._overlapped = self._overlapped or self._callers > 1
            for index, pixels in enumerate(tiles):
                self._queues.setdefault(pixels.shape, deque()).append(_Tile(request, index, pixels))
            self._ready.notify_all()
        try:
            while True:
                with self._ready:
                    batch = self._wait_for_batch(request)
                if batch is None:
                    if request.error is not None:
                        raise request.error
                    return request.results
                self._execute(batch)
        finally:
            with self._ready:
                self._callers -= 1
                if request.remaining:  # failed or interrupted: nobody runs what is left
                    for queue in self._queues.values():
                        kept = [tile for tile in queue if tile.request is not request]
                        queue.clear()
                        queue.extend(kept)

    def _wait_for_batch(self, request: _Request) -> list[_Tile] | None:
        """A batch for this thread to run, or None once the request is done (or failed)."""
        while True:
            if request.error is not None or not request.remaining:
                return None
            wake = None
            if not self._busy:
                batch, wake = self._next_batch(time.monotonic())
                if batch:
                    self._busy = True
                    return batch
            self._ready.wait(timeout=wake)

    def _next_batch(self, now: float) -> tuple[list[_Tile] | None, float | None]:
        """A full batch if there is one (oldest first), else a partial batch whose oldest
        tile has waited long enough; otherwise how long until one will have."""
        queues = [queue for queue in self._queues.values() if queue]
        if not queues:
            return None, None
        full = [queue for queue in queues if len(queue) >= self.batch_size]
        if full:
            queue = min(full, key=lambda q: q[0].queued)
            return [queue.popleft() for _ in range(self.batch_size)], None
        queue = min(queues, key=lambda q: q[0].queued)
        wait = self.max_wait if self._overlapped else 0.0
        due = queue[0].queued + wait
        if due <= now:
            return [queue.popleft() for _ in range(len(queue))], None
        return None, due - now

    def _execute(self, batch: list[_Tile]) -> None:
        predictions: Sequence[np.ndarray] = ()
        error: BaseException | None = None
        try:
            predictions = self.run_batch([tile.pixels for tile in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
            error = exc
        with self._ready:
            self._busy = False
            self.batch_sizes[len(batch)] += 1
            for position, tile in enumerate(batch):
                if error is not None:
                    tile.request.error = error
                else:
                    tile.request.results[tile.index] = predictions[position]
                tile.request.remaining -= 1
            self._ready.notify_all()

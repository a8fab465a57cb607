"""The few loops numpy cannot vectorize, compiled with numba.

:data:`AVAILABLE` is False where numba cannot be imported; every caller then takes its numpy
or scikit-image path, which gives the same values (each is tested both ways).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; a broken install falls back
    numba = None

AVAILABLE = numba is not None


def jit(function):
    """``function`` compiled (cached on disk, releasing the GIL), or as it is without numba."""
    return numba.njit(cache=True, nogil=True)(function) if numba is not None else function


@jit
def propagate(table, steps, seeds, distance):
    """Shortest paths within objects from ``seeds`` (label-correcting, first in first out):
    ``table[d, i]`` is pixel ``i``'s neighbour in direction ``d`` (-1: none), ``steps[d]``
    that step's length; ``distance`` (inf everywhere) is filled in place."""
    size = distance.size
    capacity = size + 1
    queue = np.empty(capacity, np.int64)
    queued = np.zeros(size, np.bool_)
    head = 0
    tail = 0
    for seed in seeds:
        distance[seed] = 0.0
        if not queued[seed]:
            queued[seed] = True
            queue[tail] = seed
            tail += 1
    while head != tail:
        pixel = queue[head]
        head = head + 1 if head + 1 < capacity else 0
        queued[pixel] = False
        here = distance[pixel]
        for direction in range(table.shape[0]):
            other = table[direction, pixel]
            if other < 0:
                continue
            candidate = here + steps[direction]
            if candidate < distance[other]:
                distance[other] = candidate
                if not queued[other]:
                    queued[other] = True
                    queue[tail] = other
                    tail = tail + 1 if tail + 1 < capacity else 0

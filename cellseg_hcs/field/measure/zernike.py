"""Zernike moments of every object: of its shape (MeasureObjectSizeShape) and of its
intensity (MeasureObjectIntensityDistribution), degree 9, as CellProfiler 4.2.8.

Each object's pixels are mapped into the unit disk of its minimum enclosing circle
(centrosome's, which CellProfiler uses, found as centrosome finds it: :mod:`.enclosing`);
at each pixel the Zernike polynomials ``R_nm(r) e^{i m theta}`` are evaluated once
(CellProfiler's convention: the complex coordinate is ``y + i x``, the radial part is
evaluated by Horner's rule in r^2 and is 0 outside the disk) and summed per object,
unweighted for the shape, weighted by each channel for the intensity. Compiled, each
pixel's terms go straight into its object's sums; without numba, objects are taken a few
thousand pixels at a time, so the table of polynomials stays small.

- ``AreaShape_Zernike_n_m``: ``|sum z| / (pi r^2)``;
- ``RadialDistribution_ZernikeMagnitude_<channel>_n_m``: ``|sum I z| / area``;
- ``RadialDistribution_ZernikePhase_<channel>_n_m``: ``arctan2(Re sum I z, Im sum I z)``.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from . import compiled
from .enclosing import enclosing_circles
from .objects import FieldObjects

DEGREE = 9
INDEXES = tuple((n, m) for n in range(DEGREE + 1) for m in range(n % 2, n + 1, 2))
CHUNK = 16384  # pixels per block of polynomials
_TERMS = np.array([(n - m) // 2 + 1 for n, m in INDEXES])  # terms of each radial polynomial
_POWERS = np.array([m for _, m in INDEXES])  # the power of z in each polynomial


def measure_zernike(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``AreaShape_Zernike_<n>_<m>`` for every object."""
    sums, radii = _sums(objects)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.abs(sums["__shape__"]) / (np.pi * radii**2)[:, None]
    return {f"AreaShape_Zernike_{n}_{m}": score[:, k] for k, (n, m) in enumerate(INDEXES)}


def measure_intensity_zernikes(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``RadialDistribution_Zernike{Magnitude,Phase}_<channel>_<n>_<m>``."""
    sums, _ = _sums(objects)
    out: dict[str, np.ndarray] = {}
    for name in objects.channels:
        moment = sums[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            magnitude = np.abs(moment) / objects.areas[:, None]
        phase = np.arctan2(moment.real, moment.imag)
        for k, (n, m) in enumerate(INDEXES):
            out[f"RadialDistribution_ZernikeMagnitude_{name}_{n}_{m}"] = magnitude[:, k]
            out[f"RadialDistribution_ZernikePhase_{name}_{n}_{m}"] = phase[:, k]
    return out


def _coefficients() -> np.ndarray:
    """The radial polynomials' coefficients, highest power of r^2 first (Horner's order)."""
    table = np.zeros((len(INDEXES), DEGREE // 2 + 1))
    for index, (n, m) in enumerate(INDEXES):
        sign = 1
        for k in range((n - m) // 2 + 1):
            table[index, k] = (
                sign
                * factorial(n - k)
                / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
            )
            sign = -sign
    return table


def _enclosing_circles(objects: FieldObjects) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(N, 2)`` (row, column) and radii of the minimum enclosing circles,
    centrosome's to the last bit (:func:`.enclosing.enclosing_circles`)."""

    def make():
        return enclosing_circles(*objects.hulls)

    return objects.cached("enclosing circles", make)


def _sums(objects: FieldObjects) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per object and polynomial: sum of z (key ``__shape__``) and of I z per channel."""

    def make():
        count = objects.count
        names = ["__shape__", *objects.channels]
        sums = {name: np.zeros((count, len(INDEXES)), complex) for name in names}
        if count == 0:
            return sums, np.zeros(0)
        centres, radii = _enclosing_circles(objects)
        coefficients = _coefficients()
        weights = np.column_stack(
            [np.ones(objects.pixels.size)] + [objects.values(name) for name in objects.channels]
        )
        totals = np.zeros((count, 2 * len(INDEXES), len(names)))
        if compiled.AVAILABLE:
            _compiled_sums(
                objects.rows,
                objects.cols,
                objects.starts,
                objects.areas,
                np.ascontiguousarray(centres, dtype=np.float64),
                np.asarray(radii, dtype=np.float64),
                coefficients,
                _TERMS,
                _POWERS,
                weights,
                totals,
            )
        else:
            _numpy_sums(objects, centres, radii, coefficients, weights, totals)
        for k, name in enumerate(names):
            sums[name] = totals[:, 0::2, k] + 1j * totals[:, 1::2, k]
        return sums, radii

    return objects.cached("zernike sums", make)


def _numpy_sums(objects: FieldObjects, centres, radii, coefficients, weights, totals) -> None:
    """:func:`_compiled_sums` in numpy: whole objects, about CHUNK pixels at a time, a
    table of polynomials times the weights."""
    count = objects.count
    first = 0
    while first < count:
        end = int(np.searchsorted(objects.starts, objects.starts[first] + CHUNK, "right"))
        last = max(end, first + 1)
        offset = objects.starts[first]
        span = slice(offset, objects.starts[last - 1] + objects.areas[last - 1])
        owner = objects.pixel_labels[span] - 1
        y = (objects.rows[span] - centres[owner, 0]) / radii[owner]
        x = (objects.cols[span] - centres[owner, 1]) / radii[owner]
        table = _polynomials(x, y, coefficients)
        chunk_weights = weights[span]
        for index in range(first, last):
            begin = objects.starts[index] - offset
            pixels = slice(begin, begin + objects.areas[index])
            totals[index] = table[:, pixels] @ chunk_weights[pixels]
        first = last


@compiled.jit(numpy_errors=True)  # a one-pixel object's radius is 0, as in numpy
def _compiled_sums(
    rows, cols, starts, areas, centres, radii, coefficients, terms, powers, weights, totals
):
    """:func:`_sums`' totals, pixel by pixel: the same unit-disk coordinates and the same
    Horner steps for the radial part (so the same pixels fall outside the disk), ``z ** m``
    by repeated products, and each pixel's terms added to its object's totals. The pixel's
    terms are laid out side by side and each weight column's sums are one object's row, so
    that the adds run several at a time (each total still sums its pixels in order)."""
    count = starts.size
    columns = weights.shape[1]
    real = np.empty(DEGREE + 1)
    imaginary = np.empty(DEGREE + 1)
    parts = np.empty(2 * powers.size)
    sums = np.zeros((columns, 2 * powers.size))
    for index in range(count):
        centre_y, centre_x, radius = centres[index, 0], centres[index, 1], radii[index]
        sums[:] = 0.0
        for pixel in range(starts[index], starts[index] + areas[index]):
            y = (rows[pixel] - centre_y) / radius
            x = (cols[pixel] - centre_x) / radius
            r2 = x * x + y * y
            if r2 > 1:
                continue
            real[0], imaginary[0] = 1.0, 0.0
            for m in range(1, DEGREE + 1):  # z = y + i x
                real[m] = real[m - 1] * y - imaginary[m - 1] * x
                imaginary[m] = real[m - 1] * x + imaginary[m - 1] * y
            for polynomial in range(powers.size):
                radial = 0.0
                for k in range(terms[polynomial]):
                    radial = radial * r2 + coefficients[polynomial, k]
                parts[2 * polynomial] = radial * real[powers[polynomial]]
                parts[2 * polynomial + 1] = radial * imaginary[powers[polynomial]]
            for column in range(columns):
                weight = weights[pixel, column]
                for term in range(parts.size):
                    sums[column, term] += parts[term] * weight
        for column in range(columns):
            for term in range(parts.size):
                totals[index, term, column] = sums[column, term]


def _polynomials(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``(2 * polynomials, pixels)``: real and imaginary parts at points of the unit disk,
    computed as centrosome does (``z ** m`` for the angular part)."""
    r2 = x * x + y * y
    outside = r2 > 1
    z = y + 1j * x
    powers = {}
    out = np.empty((2 * len(INDEXES), x.size))
    radial = np.empty_like(r2)
    for index, (n, m) in enumerate(INDEXES):
        radial.fill(0)
        for k in range((n - m) // 2 + 1):
            radial *= r2
            radial += coefficients[index, k]
        radial[outside] = 0
        if m == 0:
            out[2 * index] = radial
            out[2 * index + 1] = 0
        else:
            if m not in powers:
                power = z if m == 1 else z**m
                powers[m] = (np.ascontiguousarray(power.real), np.ascontiguousarray(power.imag))
            np.multiply(radial, powers[m][0], out=out[2 * index])
            np.multiply(radial, powers[m][1], out=out[2 * index + 1])
    return out

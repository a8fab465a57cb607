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


def jit(function=None, *, numpy_errors: bool = False):
    """``function`` compiled (cached on disk, releasing the GIL), or as it is without numba.

    ``numpy_errors``: a float division by zero gives inf or NaN, as in numpy, instead of
    raising (``@jit(numpy_errors=True)``)."""
    if function is None:
        return lambda inner: jit(inner, numpy_errors=numpy_errors)
    if numba is None:
        return function
    model = "numpy" if numpy_errors else "python"
    return numba.njit(cache=True, nogil=True, error_model=model)(function)


@jit
def propagate(position, places, owner, offsets, steps, seeds, distance):
    """Shortest paths within objects from ``seeds`` (label-correcting, first in first out).

    Pixel ``i`` sits at ``places[i]`` of a padded flat image in which ``position`` gives
    each place's pixel (-1: none); its neighbour in direction ``d`` is at ``places[i] +
    offsets[d]``, a step of ``steps[d]``, and counts when it belongs to the same object
    (``owner``). ``distance`` (inf everywhere) is filled in place.
    """
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
        place = places[pixel]
        mine = owner[pixel]
        for direction in range(offsets.size):
            other = position[place + offsets[direction]]
            if other < 0 or owner[other] != mine:
                continue
            candidate = here + steps[direction]
            if candidate < distance[other]:
                distance[other] = candidate
                if not queued[other]:
                    queued[other] = True
                    queue[tail] = other
                    tail = tail + 1 if tail + 1 < capacity else 0


@jit
def squared_distances(mask):
    """Each pixel's squared Euclidean distance to the nearest False pixel of ``mask`` (2-D
    bool), exact (integers as float64; inf where the mask has no False pixel): the lower
    envelope of parabolas along rows over the distances along columns (Felzenszwalb and
    Huttenlocher 2012, "Distance transforms of sampled functions")."""
    height, width = mask.shape
    infinity = np.inf
    columns = np.empty((height, width))  # distance along the column, row by row
    for row in range(height):
        for col in range(width):
            if not mask[row, col]:
                columns[row, col] = 0.0
            elif row == 0:
                columns[row, col] = infinity
            else:
                columns[row, col] = columns[row - 1, col] + 1.0
    for row in range(height - 2, -1, -1):
        for col in range(width):
            below = columns[row + 1, col] + 1.0
            if below < columns[row, col]:
                columns[row, col] = below
    out = np.empty((height, width))
    sites = np.empty(width, np.int64)
    bounds = np.empty(width + 1)
    for row in range(height):
        f = columns[row]
        count = -1
        for q in range(width):  # the lower envelope of (x - q)^2 + f(q)^2
            if f[q] == infinity:
                continue
            value = f[q] * f[q] + q * q
            while count >= 0:
                v = sites[count]
                start = (value - (f[v] * f[v] + v * v)) / (2.0 * (q - v))
                if start <= bounds[count]:
                    count -= 1
                else:
                    break
            count += 1
            sites[count] = q
            bounds[count] = -infinity if count == 0 else start
            bounds[count + 1] = infinity
        if count < 0:
            for x in range(width):
                out[row, x] = infinity
            continue
        k = 0
        for x in range(width):
            while bounds[k + 1] < x:
                k += 1
            v = sites[k]
            out[row, x] = (x - v) * (x - v) + f[v] * f[v]
    return out


@jit
def perimeters(labels, rows, cols, owners, count, weights):
    """skimage's ``perimeter(image, 4)`` of every object (its object pixels given by row,
    column and label, in :attr:`~.objects.FieldObjects.pixels` order): a pixel with a
    4-neighbour of another label, or on the image's edge, is on the border; each border
    pixel adds ``weights[code]``, its code 1 + 2 per 4-neighbour and 10 per diagonal
    neighbour on the same object's border. Summed in pixel order, as ``np.bincount``."""
    height, width = labels.shape
    border = np.zeros((height, width), np.bool_)
    for index in range(rows.size):
        row, col, own = rows[index], cols[index], owners[index]
        border[row, col] = (
            row == 0
            or row == height - 1
            or col == 0
            or col == width - 1
            or labels[row - 1, col] != own
            or labels[row + 1, col] != own
            or labels[row, col - 1] != own
            or labels[row, col + 1] != own
        )
    total = np.zeros(count)
    for index in range(rows.size):
        row, col, own = rows[index], cols[index], owners[index]
        if not border[row, col]:
            continue
        code = 1
        for dy in range(-1, 2):
            y = row + dy
            if y < 0 or y >= height:
                continue
            for dx in range(-1, 2):
                x = col + dx
                if (dy == 0 and dx == 0) or x < 0 or x >= width:
                    continue
                if border[y, x] and labels[y, x] == own:
                    code += 2 if dy == 0 or dx == 0 else 10
        total[own - 1] += weights[code]
    return total


@jit
def euler_numbers(labels, count, coefficients):
    """Each object's Euler number from its 2 x 2 patterns: every window of the image
    padded by a pixel adds, for each object in it, ``coefficients[code]`` where the code
    sums 1 (bottom right), 4 (bottom left), 2 (top right) and 8 (top left) over the
    window's pixels of that object."""
    height, width = labels.shape
    total = np.zeros(count)
    for row in range(-1, height):
        for col in range(-1, width):
            top = row >= 0
            bottom = row + 1 < height
            left = col >= 0
            right = col + 1 < width
            top_left = labels[row, col] if top and left else 0
            top_right = labels[row, col + 1] if top and right else 0
            bottom_left = labels[row + 1, col] if bottom and left else 0
            bottom_right = labels[row + 1, col + 1] if bottom and right else 0
            if top_left == 0 and top_right == 0 and bottom_left == 0 and bottom_right == 0:
                continue
            corners = (bottom_right, bottom_left, top_right, top_left)
            for first in range(4):
                label = corners[first]
                if label == 0:
                    continue
                seen = False
                for earlier in range(first):
                    if corners[earlier] == label:
                        seen = True
                if seen:
                    continue
                code = 0
                if bottom_right == label:
                    code += 1
                if bottom_left == label:
                    code += 4
                if top_right == label:
                    code += 2
                if top_left == label:
                    code += 8
                total[label - 1] += coefficients[code]
    return total


@jit
def _reflected(index, size):
    """``index`` in an axis of ``size`` reflected at its edges, the edge repeated (scipy's
    ``"reflect"``), however far outside."""
    period = 2 * size
    index %= period
    return period - 1 - index if index >= size else index


@jit
def disk_extreme(image, halves, minimum):
    """The minimum (``minimum``) or maximum of ``image`` (2-D float) over a footprint of
    centred rows, row ``d`` spanning ``halves[d]`` pixels either side, reflected border:
    a grey erosion or dilation by a disk. The running extreme of half-width ``h`` along
    the rows is the one of ``h - 1`` and the two pixels ``h`` away; each output pixel
    is then the extreme of one running extreme per footprint row."""
    height, width = image.shape
    reach = 0
    for half in halves:
        reach = max(reach, half)
    runs = np.empty((reach + 1, height, width))
    runs[0] = image
    for half in range(1, reach + 1):
        for row in range(height):
            for column in range(width):
                value = runs[half - 1, row, column]
                left = image[row, _reflected(column - half, width)]
                right = image[row, _reflected(column + half, width)]
                if minimum:
                    value = min(value, left, right)
                else:
                    value = max(value, left, right)
                runs[half, row, column] = value
    radius = halves.size // 2
    out = np.empty_like(image)
    for row in range(height):
        for column in range(width):
            value = runs[halves[0], _reflected(row - radius, height), column]
            for d in range(1, halves.size):
                other = runs[halves[d], _reflected(row - radius + d, height), column]
                value = min(value, other) if minimum else max(value, other)
            out[row, column] = value
    return out


@jit
def bilinear_weights(rows, cols, starts, areas, scale_y, scale_x):
    """Each object's weights on the grid points of its box (``(rows, cols) * scale``
    mapped onto a coarser grid, four bilinear corners per pixel, each pixel weighing
    1 / area): the same sums, in the same order, as one ``bincount`` per corner added up.

    Returns the flat weights, each box's top row, left column, width and first place.
    """
    count = starts.size
    size = rows.size
    row0 = np.empty(size, np.int64)
    col0 = np.empty(size, np.int64)
    row_part = np.empty(size)
    col_part = np.empty(size)
    top = np.empty(count, np.int64)
    left = np.empty(count, np.int64)
    widths = np.empty(count, np.int64)
    pointers = np.zeros(count + 1, np.int64)
    for index in range(count):
        first = starts[index]
        low_row = low_col = np.iinfo(np.int64).max
        high_row = high_col = np.iinfo(np.int64).min
        for pixel in range(first, first + areas[index]):
            y = rows[pixel] * scale_y
            x = cols[pixel] * scale_x
            y0 = np.floor(y)
            x0 = np.floor(x)
            row_part[pixel] = y - y0
            col_part[pixel] = x - x0
            row0[pixel] = int(y0)
            col0[pixel] = int(x0)
            low_row = min(low_row, row0[pixel])
            high_row = max(high_row, row0[pixel])
            low_col = min(low_col, col0[pixel])
            high_col = max(high_col, col0[pixel])
        top[index] = low_row
        left[index] = low_col
        widths[index] = high_col - low_col + 2  # one more for the far corners
        pointers[index + 1] = pointers[index] + (high_row - low_row + 2) * widths[index]
    weights = np.zeros(pointers[count])
    corner = np.empty(pointers[count])
    for dy in range(2):
        for dx in range(2):
            corner[:] = 0.0
            for index in range(count):
                first = starts[index]
                share = 1.0 / areas[index]
                for pixel in range(first, first + areas[index]):
                    wy = row_part[pixel] if dy else 1 - row_part[pixel]
                    wx = col_part[pixel] if dx else 1 - col_part[pixel]
                    place = (
                        pointers[index]
                        + (row0[pixel] - top[index] + dy) * widths[index]
                        + (col0[pixel] - left[index] + dx)
                    )
                    corner[place] += wy * wx * share
            weights += corner
    return weights, top, left, widths, pointers


@jit
def nearest_labels(labels):
    """Each pixel takes the label of its nearest object pixel (``labels`` 2-D, at least one
    above 0), that pixel chosen exactly as ``scipy.ndimage.distance_transform_edt(labels
    == 0, return_indices=True)`` chooses it, ties included. The algorithm is scipy's (Maurer, Qi
    and Raghavan 2003, "A linear time algorithm for computing exact Euclidean distance
    transforms of binary images in arbitrary dimensions"): the nearest site along each
    column (ties to the upper one), then along each row the lower envelope of those
    columns' sites (a site is dropped only when strictly hidden), each pixel taking the
    first of the envelope's sites from which the next is not strictly nearer. All in
    integers, as scipy's doubles hold them exactly."""
    height, width = labels.shape
    # The column's nearest site's row (-1: none), by a sweep down (the nearest site at or
    # above) and one up (at or below), row by row in memory order; a tie goes up.
    near_row = np.empty((height, width), np.int32)
    for col in range(width):
        near_row[0, col] = 0 if labels[0, col] > 0 else -1
    for row in range(1, height):
        for col in range(width):
            if labels[row, col] > 0:
                near_row[row, col] = row
            else:
                near_row[row, col] = near_row[row - 1, col]
    below = np.full(width, -1, np.int32)
    for row in range(height - 1, -1, -1):
        for col in range(width):
            if labels[row, col] > 0:
                below[col] = row
            elif below[col] >= 0:
                above = near_row[row, col]
                if above < 0 or below[col] - row < row - above:
                    near_row[row, col] = below[col]
    out = np.empty_like(labels)
    stack = np.empty(width, np.int64)
    squared = np.empty(width, np.int64)  # a column's site's squared distance to this row
    for row in range(height):
        top = -1
        for col in range(width):
            site_row = near_row[row, col]
            if site_row < 0:
                continue
            w = np.int64(site_row - row)
            w = w * w
            squared[col] = w
            while top >= 1:
                last = stack[top]
                before = stack[top - 1]
                a = last - before
                b = col - last
                c = a + b
                if c * squared[last] - b * squared[before] - a * w - a * b * c <= 0:
                    break
                top -= 1
            top += 1
            stack[top] = col
        k = 0
        site = stack[0]
        for col in range(width):
            step = site - col
            here = step * step + squared[site]
            while k < top:
                following = stack[k + 1]
                step = following - col
                there = step * step + squared[following]
                if here <= there:
                    break
                here = there
                k += 1
                site = following
            out[row, col] = labels[near_row[row, site], site]
    return out


@jit
def grown_contacts(grown, count):
    """For a label image in which every pixel has a label ``1..count`` (the grown
    objects): each label's number of other labels 4-adjacent to it, its outline pixels (an
    8-neighbour of another label, or on the image's edge) and those of them with an
    8-neighbour of another label. Each pixel is compared with its right, lower and two
    lower diagonal neighbours (every 8-adjacent pair once); the 4-adjacent pairs of labels
    are kept once per run of equal pairs along a row, then made unique."""
    height, width = grown.shape
    differs = np.zeros((height, width), np.bool_)
    # Room for every pair; only the pages written are ever touched (a few thousand keys).
    keys = np.empty(2 * height * width, np.int64)
    found = 0
    stride = np.int64(count) + 1
    for row in range(height):
        last_across = np.int64(-1)
        last_down = np.int64(-1)
        for col in range(width):
            here = grown[row, col]
            if col + 1 < width:
                other = grown[row, col + 1]
                if other != here:
                    differs[row, col] = True
                    differs[row, col + 1] = True
                    key = min(here, other) * stride + max(here, other)
                    if key != last_across:
                        keys[found] = key
                        found += 1
                        last_across = key
            if row + 1 < height:
                other = grown[row + 1, col]
                if other != here:
                    differs[row, col] = True
                    differs[row + 1, col] = True
                    key = min(here, other) * stride + max(here, other)
                    if key != last_down:
                        keys[found] = key
                        found += 1
                        last_down = key
                if col + 1 < width and grown[row + 1, col + 1] != here:
                    differs[row, col] = True
                    differs[row + 1, col + 1] = True
                if col > 0 and grown[row + 1, col - 1] != here:
                    differs[row, col] = True
                    differs[row + 1, col - 1] = True
    outline = np.zeros(count + 1, np.int64)
    touching = np.zeros(count + 1, np.int64)
    for row in range(height):
        for col in range(width):
            label = grown[row, col]
            if differs[row, col]:
                touching[label] += 1
                outline[label] += 1
            elif row == 0 or col == 0 or row == height - 1 or col == width - 1:
                outline[label] += 1
    neighbours = np.zeros(count + 1, np.int64)
    pairs = np.unique(keys[:found])
    for key in pairs:
        neighbours[key // stride] += 1
        neighbours[key % stride] += 1
    return neighbours[1:], outline[1:], touching[1:]


@jit(numpy_errors=True)
def hull_cosines(points, vertices, first, second):
    """For each vertex ``V`` (a row of ``points``: label, row, column) with its segment's
    ends ``S0`` and ``S1`` (rows ``first``, ``second``): the cosines of the angles at
    ``S1`` and at ``S0`` of the triangle S0-S1-V, in numpy's operations on centrosome's
    arrays (integer differences made float, products and sums in its order)."""
    count = vertices.size
    at_s1 = np.empty(count)
    at_s0 = np.empty(count)
    for index in range(count):
        v, s0, s1 = vertices[index], first[index], second[index]
        across_row = float(points[s0, 1] - points[s1, 1])
        across_col = float(points[s0, 2] - points[s1, 2])
        from_s0_row = float(points[v, 1] - points[s0, 1])
        from_s0_col = float(points[v, 2] - points[s0, 2])
        from_s1_row = float(points[v, 1] - points[s1, 1])
        from_s1_col = float(points[v, 2] - points[s1, 2])
        across = across_row * across_row + across_col * across_col
        at_s1[index] = (across_row * from_s1_row + across_col * from_s1_col) / np.sqrt(
            across * (from_s1_row * from_s1_row + from_s1_col * from_s1_col)
        )
        at_s0[index] = ((-across_row) * from_s0_row + (-across_col) * from_s0_col) / np.sqrt(
            across * (from_s0_row * from_s0_row + from_s0_col * from_s0_col)
        )
    return at_s1, at_s0


@jit
def _distance2_to_line(point, start, end):
    """The squared distance from ``point`` to the line through ``start`` and ``end``, in
    centrosome's operations (the same floats)."""
    cross = (start[0] - end[0]) * (start[1] - point[1]) - (start[0] - point[0]) * (
        start[1] - end[1]
    )
    return cross**2 / ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2)


@jit
def feret_diameters(points, counts):
    """Each convex hull's minimum and maximum Feret diameters as centrosome's
    ``feret_diameter`` gives them, which CellProfiler reports (``points``: the hulls' ``(row,
    column)`` vertices as float64, hull by hull, counter-clockwise; ``counts``: vertices per
    hull). Its walk is kept step for step, as its pairs are not always every antipodal
    pair: from vertex 0 and the vertex farthest from the line through the last and the
    first vertex (ties to the lowest), the candidate advances while the next vertex is at
    least as far from the current edge, else the edge advances. The maximum is the longest
    pair; the minimum, over the pairs in both directions (vertex 0 also counted as vertex
    ``n``), is the least distance from a pair's first vertex to the edge from its second
    vertex when the pair with the next vertex is there too (0 when none is)."""
    hulls = counts.size
    minimum = np.zeros(hulls)
    maximum = np.zeros(hulls)
    start = 0
    for hull in range(hulls):
        size = counts[hull]
        p = points[start : start + size]
        start += size
        firsts = np.empty(2 * size + 2, np.int64)
        seconds = np.empty(2 * size + 2, np.int64)
        pairs = 0
        if size == 1:
            firsts[0], seconds[0], pairs = 0, 0, 1
        elif size == 2:
            firsts[0], seconds[0], pairs = 0, 1, 1
        elif size > 2:
            antipode, farthest = 1, -1.0
            for vertex in range(1, size - 1):
                distance = _distance2_to_line(p[vertex], p[size - 1], p[0])
                if distance > farthest:
                    antipode, farthest = vertex, distance
            vertex = 0
            while True:
                firsts[pairs], seconds[pairs] = vertex, antipode
                pairs += 1
                here = _distance2_to_line(p[antipode], p[vertex], p[vertex + 1])
                following = antipode + 1 if antipode + 1 < size else 0
                there = _distance2_to_line(p[following], p[vertex], p[vertex + 1])
                if here <= there:
                    antipode += 1
                else:
                    vertex += 1
                if antipode >= size or vertex == antipode:
                    break
        longest = 0.0
        member = np.zeros((size, size + 1), np.bool_)
        for pair in range(pairs):
            a, b = firsts[pair], seconds[pair]
            dy, dx = p[a, 0] - p[b, 0], p[a, 1] - p[b, 1]
            longest = max(longest, dy * dy + dx * dx)
            if a != b:
                member[a, b] = member[b, a] = True
        maximum[hull] = np.sqrt(longest)
        for a in range(size):
            member[a, size] = member[a, 0]
        least = np.inf
        for a in range(size):
            for b in range(size):
                if member[a, b] and member[a, b + 1]:
                    following = b + 1 if b + 1 < size else 0
                    least = min(least, _distance2_to_line(p[a], p[b], p[following]))
        minimum[hull] = 0.0 if least == np.inf or np.isnan(least) else np.sqrt(least)
    return minimum, maximum

"""Training augmentation: patches at many scales, geometry, intensity, and object density.

All functions take and return normalized float32 images (YX, or CYX) and integer labels,
and draw their randomness from the ``numpy.random.Generator`` they are given, so a
training run is repeatable from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize


@dataclass(frozen=True)
class AugmentSettings:
    """What the augmentation varies, and how far.

    ``diameter_range`` is the span of object diameters (pixels) that patches are rescaled
    to with probability ``wide_scale_probability``; otherwise the scale is jittered around
    the image's own by ``scale_jitter``. ``density_probability`` is the chance of copying
    annotated objects into free space (the LIVECell study's way to vary confluence).
    ``touching_probability`` is the chance that those copies are pushed up against an
    existing object instead (touching nuclei with no dark gap between them, which the
    watershed must split), and each copy's intensity is scaled by a factor drawn from
    ``pasted_gain`` (neighbours of unequal brightness). The defaults leave both off.
    """

    patch_size: int = 256
    diameter_range: tuple[float, float] = (8.0, 80.0)
    wide_scale_probability: float = 0.5
    scale_jitter: tuple[float, float] = (0.75, 1.33)
    object_centred_probability: float = 0.7
    gain: tuple[float, float] = (0.6, 1.5)
    gamma: tuple[float, float] = (0.6, 1.6)
    offset: tuple[float, float] = (-0.15, 0.15)
    blur_probability: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    noise_probability: float = 0.3
    noise_std: tuple[float, float] = (0.01, 0.12)
    density_probability: float = 0.3
    density_objects: tuple[int, int] = (3, 15)
    touching_probability: float = 0.0
    pasted_gain: tuple[float, float] = (1.0, 1.0)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def choose_scale(diameter: float, settings: AugmentSettings, rng: np.random.Generator) -> float:
    """Scale factor for one patch: wide (to a random target diameter) or near native."""
    if diameter > 0 and rng.random() < settings.wide_scale_probability:
        return _log_uniform(rng, *settings.diameter_range) / diameter
    return _log_uniform(rng, *settings.scale_jitter)


def random_patch(
    image: np.ndarray,
    labels: np.ndarray,
    scale: float,
    settings: AugmentSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``patch_size`` square cut at ``scale`` (source region ``patch_size / scale``).

    The region is centred on a random object with probability ``object_centred_probability``;
    where it leaves the image it is filled with background (0 image, 0 labels).
    """
    size = settings.patch_size
    source = max(int(round(size / scale)), 4)
    height, width = labels.shape
    objects = np.flatnonzero(labels.ravel())
    if objects.size and rng.random() < settings.object_centred_probability:
        y, x = np.unravel_index(objects[rng.integers(objects.size)], labels.shape)
        top = int(y) - source // 2 + int(rng.integers(-source // 4, source // 4 + 1))
        left = int(x) - source // 2 + int(rng.integers(-source // 4, source // 4 + 1))
    else:
        top = int(rng.integers(min(0, height - source), max(height - source, 0) + 1))
        left = int(rng.integers(min(0, width - source), max(width - source, 0) + 1))
    image_crop = np.zeros(image.shape[:-2] + (source, source), dtype=np.float32)
    labels_crop = np.zeros((source, source), dtype=labels.dtype)
    ys = slice(max(top, 0), min(top + source, height))
    xs = slice(max(left, 0), min(left + source, width))
    dst = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
    image_crop[(..., *dst)] = image[..., ys, xs]
    labels_crop[dst] = labels[ys, xs]
    if source != size:
        shape = image_crop.shape[:-2] + (size, size)
        image_crop = resize(
            image_crop, shape, order=1, anti_aliasing=source > size, preserve_range=True
        ).astype(np.float32)
        labels_crop = resize(
            labels_crop, (size, size), order=0, anti_aliasing=False, preserve_range=True
        ).astype(labels.dtype)
    return image_crop, labels_crop


def flip_rotate(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips/90-degree rotations, chosen at random."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k, axes=(-2, -1)), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[..., ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def vary_intensity(
    image: np.ndarray, settings: AugmentSettings, rng: np.random.Generator
) -> np.ndarray:
    """Gamma, gain, offset, blur and noise on a normalized image (dim, bright, noisy)."""
    image = np.clip(image, 0, None)
    image = image ** np.float32(_log_uniform(rng, *settings.gamma))
    image = image * np.float32(_log_uniform(rng, *settings.gain))
    image = image + np.float32(rng.uniform(*settings.offset))
    if rng.random() < settings.blur_probability:
        sigma = rng.uniform(*settings.blur_sigma)
        image = ndi.gaussian_filter(image, sigma=[0] * (image.ndim - 2) + [sigma, sigma])
    if rng.random() < settings.noise_probability:
        std = rng.uniform(*settings.noise_std)
        image = image + rng.normal(0, std, image.shape).astype(np.float32)
    return image.astype(np.float32, copy=False)


def paste_objects(
    image: np.ndarray,
    labels: np.ndarray,
    source_image: np.ndarray,
    source_labels: np.ndarray,
    count: int,
    rng: np.random.Generator,
    touching: bool = False,
    gain: tuple[float, float] = (1.0, 1.0),
    classes: dict[int, int] | None = None,
    source_classes: dict[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy up to ``count`` objects of the source into the target, each scaled by a gain.

    ``classes`` (the target's object id -> class index), when given, is updated in place
    with each copy's class, read from ``source_classes`` (the source's).

    By default an object is placed only where neither it nor a 2-pixel margin touches an
    existing object. With ``touching``, each copy instead slides towards an existing object
    (chosen at random, from a random direction) and stops at the last position where it
    does not overlap it: the two touch, or leave at most a one-pixel gap. Pasted objects
    never overlap annotated ones.
    """
    image, labels = image.copy(), labels.copy()
    boxes = ndi.find_objects(source_labels)
    candidates = [i for i, box in enumerate(boxes, start=1) if box is not None]
    if not candidates:
        return image, labels
    occupied = ndi.binary_dilation(labels > 0, iterations=MARGIN)
    next_id = int(labels.max()) + 1
    for number in rng.choice(candidates, size=min(count, len(candidates)), replace=False):
        box = boxes[number - 1]
        mask = source_labels[box] == number
        if touching and labels.any():
            target = _touching_place(labels, mask, rng)
        else:
            target = _free_place(occupied, mask, rng)
        if target is None:
            continue
        varied = tuple(gain) != (1.0, 1.0)  # no draw otherwise: the old random stream
        factor = np.float32(_log_uniform(rng, *gain) if varied else 1.0)
        image[(..., *target)] = np.where(
            mask, source_image[(..., *box)] * factor, image[(..., *target)]
        )
        labels[target][mask] = next_id
        if classes is not None:
            classes[next_id] = source_classes.get(int(number), -1)  # -1: no class
        if not touching:  # touching copies are placed by the labels, not by the margin
            _occupy(occupied, target, mask, MARGIN)
        next_id += 1
    return image, labels


MARGIN = 2  # pixels kept free around every object when copies are placed apart


def _occupy(
    occupied: np.ndarray, target: tuple[slice, slice], mask: np.ndarray, margin: int
) -> None:
    """Mark ``mask``, placed at ``target``, and a ``margin`` around it in ``occupied``.

    The margin reaches past the mask's box (clipped to the image): dilating the mask inside
    its box alone would leave no margin where the mask meets the box's edge, which is on
    every side.
    """
    grown = ndi.binary_dilation(np.pad(mask, margin), iterations=margin)
    top, left = target[0].start - margin, target[1].start - margin
    rows = slice(max(top, 0), min(top + grown.shape[0], occupied.shape[0]))
    cols = slice(max(left, 0), min(left + grown.shape[1], occupied.shape[1]))
    occupied[rows, cols] |= grown[
        rows.start - top : rows.stop - top, cols.start - left : cols.stop - left
    ]


def _free_place(
    occupied: np.ndarray, mask: np.ndarray, rng: np.random.Generator, tries: int = 5
) -> tuple[slice, slice] | None:
    """A random box for ``mask`` clear of ``occupied``, or None after ``tries`` misses."""
    (height, width), (h, w) = occupied.shape, mask.shape
    if h >= height or w >= width:
        return None
    for _ in range(tries):
        top, left = int(rng.integers(height - h)), int(rng.integers(width - w))
        target = (slice(top, top + h), slice(left, left + w))
        if not (occupied[target] & mask).any():
            return target
    return None


def _touching_place(
    labels: np.ndarray, mask: np.ndarray, rng: np.random.Generator, tries: int = 5
) -> tuple[slice, slice] | None:
    """A box where ``mask`` touches an object of ``labels`` without overlapping any.

    The mask's centre starts far from a random object's centre, in a random direction, and
    moves towards it one pixel at a time; the last clear position before the first overlap
    is the answer. A try fails when that position leaves the image, or when the path meets
    no object (through the opening of a C-shaped one); None after ``tries``.
    """
    (height, width), (h, w) = labels.shape, mask.shape
    filled = labels > 0
    ids = labels[filled]
    for _ in range(tries):
        ys_obj, xs_obj = np.nonzero(labels == ids[rng.integers(ids.size)])
        centre_y, centre_x = ys_obj.mean(), xs_obj.mean()
        angle = rng.uniform(0, 2 * np.pi)
        step_y, step_x = np.sin(angle), np.cos(angle)
        previous = None
        for distance in range(int(np.ptp(ys_obj) + np.ptp(xs_obj) + h + w), -1, -1):
            top = int(round(centre_y + distance * step_y - h / 2))
            left = int(round(centre_x + distance * step_x - w / 2))
            inside = 0 <= top and top + h <= height and 0 <= left and left + w <= width
            if inside and (filled[top : top + h, left : left + w] & mask).any():
                if previous is not None:
                    return previous
                break
            previous = (slice(top, top + h), slice(left, left + w)) if inside else None
    return None

"""The Cellpose training layout: ``NAME_img.png`` beside ``NAME_masks.png`` in one folder.

Cellpose's whole-cell images are RGB with the cell stain (cytoplasm, membrane, actin) in
green and the nuclei in red; a cell model of this package reads two channels in the order
:data:`CELL_MODEL_CHANNELS`: the cell stain first, then the nuclei. This reader gives every
sample that order, so a model trained on a Cellpose folder takes ``--cells-channel`` and
``--channel`` planes in the same order as the pipeline hands them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...io.images import read_image
from .base import Sample
from .folders import IMAGE_SUFFIXES, as_instances

CELL_MODEL_CHANNELS = ("cell stain", "nuclei")
"""The input channels of a cell model, in order."""

IMAGE_ENDING = "_img"
MASK_ENDING = "_masks"
GREEN, RED = 1, 0


def cell_model_planes(image: np.ndarray, where: str = "the image") -> np.ndarray:
    """A Cellpose-style image as (cell stain, nuclei) planes, CYX.

    RGB(A) images give (green, red); a single-channel image is the cell stain alone (a
    model trained on such images reads one channel); two planes (CYX) are taken as they are.

    Examples
    --------
    >>> rgb = np.zeros((4, 5, 3), np.uint8); rgb[..., 0] = 9; rgb[..., 1] = 7
    >>> cell_model_planes(rgb)[:, 0, 0]
    array([7, 9], dtype=uint8)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return np.stack([image[..., GREEN], image[..., RED]])
    if image.ndim == 3 and image.shape[0] == 2:
        return image
    raise InputError(
        f"{where}: expected a grey, RGB or two-channel image for a cell model, got {image.shape}."
    )


class CellposeFolder(Sequence):
    """Samples from one folder of ``NAME_img.EXT`` images and ``NAME_masks.EXT`` masks.

    Each image becomes (cell stain, nuclei) planes (:func:`cell_model_planes`: green, then
    red); masks are instance labels (or binary masks, split into connected objects).

    Parameters
    ----------
    folder:
        The folder (Cellpose's ``train/`` or ``test/``).
    pattern:
        Glob for the images to take (default every ``*_img.*``).

    Examples
    --------
    >>> dataset = CellposeFolder("cellpose/train")  # doctest: +SKIP
    >>> dataset[0].image.shape  # (cell stain, nuclei, height, width)  # doctest: +SKIP
    (2, 383, 512)
    """

    def __init__(self, folder: str | Path, *, pattern: str = f"*{IMAGE_ENDING}.*") -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: not a folder.")
        files = {
            p.stem: p for p in sorted(self.folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        self.pairs: list[tuple[Path, Path]] = []
        self.unmatched: list[str] = []
        for path in sorted(self.folder.glob(pattern)):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.stem.endswith(IMAGE_ENDING):
                continue
            mask = files.get(path.stem[: -len(IMAGE_ENDING)] + MASK_ENDING)
            if mask is None:
                self.unmatched.append(path.name)
            else:
                self.pairs.append((path, mask))
        if not self.pairs:
            raise InputError(
                f"{self.folder}: no NAME{IMAGE_ENDING} image with a NAME{MASK_ENDING} mask "
                f"beside it (the Cellpose layout)."
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        image_path, mask_path = self.pairs[index]
        planes = cell_model_planes(read_image(image_path), str(image_path))
        labels = as_instances(read_image(mask_path))
        if planes.shape[1:] != labels.shape:
            raise InputError(
                f"{mask_path}: mask shape {labels.shape} does not fit image "
                f"{image_path.name} of shape {planes.shape[1:]}."
            )
        return Sample(planes, labels, image_path.stem[: -len(IMAGE_ENDING)])


def training_folder(
    images: str | Path, masks: str | Path | None = None, *, pattern: str = "*"
) -> Sequence[Sample]:
    """The dataset of a folder as users give it: image + mask folders, or one Cellpose folder.

    With ``masks``, images pair with masks by name (:class:`ImageMaskFolder`; images may
    have several channels). Without, ``images`` is read in the Cellpose layout
    (:class:`CellposeFolder`), ``pattern`` narrowing its ``*_img`` files.
    """
    from .folders import ImageMaskFolder

    if masks is not None:
        return ImageMaskFolder(images, masks, pattern=pattern)
    return CellposeFolder(images, pattern=f"*{IMAGE_ENDING}.*" if pattern == "*" else pattern)

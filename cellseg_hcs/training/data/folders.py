"""Folder layouts: image + mask folders, and one-mask-per-object folders (DSB2018)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ...errors import InputError
from ...io.images import read_image
from .base import Sample

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
MASK_NAME_ENDINGS = ("", "_labels", "_label", "_masks", "_mask", "_seg", "_cp_masks")


def _image_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)


def as_instances(mask: np.ndarray) -> np.ndarray:
    """Instance labels from a mask: kept as is if it has ids, split into components if binary.

    A mask whose only nonzero value is one number (1, 255, True) is binary: each connected
    object becomes its own instance. An RGB(A) mask is read as its first channel.
    """
    mask = first_channel(mask)
    values = np.unique(mask)
    if values.size <= 2:
        labels, _ = ndi.label(mask > 0)
        return labels.astype(np.int32)
    return mask.astype(np.int32)


def first_channel(mask: np.ndarray) -> np.ndarray:
    """A mask's label plane: an RGB(A) mask's first channel, a stack's first plane."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0] if mask.shape[-1] <= 4 else mask[0]
    return mask


class ImageMaskFolder(Sequence):
    """Images in one folder and their masks in another, paired by file name.

    A mask pairs with ``name.tif`` when it is called ``name`` or ``name_labels``,
    ``name_masks``, ``name_mask``, ``name_seg`` or ``name_cp_masks`` with any image suffix.
    Masks can be instance labels (0 = background, one id per object) or binary masks (then
    split into connected objects).

    Parameters
    ----------
    images, masks:
        The two folders.
    pattern:
        Glob for the image files to take, e.g. ``"training__*"``.
    cache:
        Keep read samples in memory (the default; datasets here are small).

    Examples
    --------
    >>> dataset = ImageMaskFolder("data/images", "data/masks")  # doctest: +SKIP
    >>> dataset[0].labels.max()  # doctest: +SKIP
    """

    def __init__(
        self, images: str | Path, masks: str | Path, *, pattern: str = "*", cache: bool = True
    ) -> None:
        self.images_dir = Path(images)
        self.masks_dir = Path(masks)
        for folder in (self.images_dir, self.masks_dir):
            if not folder.is_dir():
                raise InputError(f"{folder}: not a folder.")
        masks_by_stem = {p.stem: p for p in _image_files(self.masks_dir, "*")}
        self.pairs: list[tuple[Path, Path]] = []
        unmatched = []
        for image in _image_files(self.images_dir, pattern):
            mask = next(
                (
                    masks_by_stem[image.stem + e]
                    for e in MASK_NAME_ENDINGS
                    if image.stem + e in masks_by_stem
                ),
                None,
            )
            if mask is None:
                unmatched.append(image.name)
            else:
                self.pairs.append((image, mask))
        if not self.pairs:
            raise InputError(
                f"{self.images_dir}: no image matching {pattern!r} has a mask in {self.masks_dir}."
            )
        self.unmatched = unmatched
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, mask_path = self.pairs[index]
        sample = Sample(
            read_image(image_path), as_instances(read_image(mask_path)), image_path.stem
        )
        if (
            sample.image.shape[-2:] != sample.labels.shape
            and sample.image.shape[:2] != sample.labels.shape
        ):
            raise InputError(
                f"{mask_path}: mask shape {sample.labels.shape} does not fit image "
                f"{image_path.name} of shape {sample.image.shape}."
            )
        if self._cache is not None:
            self._cache[index] = sample
        return sample


class ObjectMaskFolders(Sequence):
    """The DSB2018 layout: ``ROOT/<id>/images/<id>.png`` and ``ROOT/<id>/masks/*.png``.

    Each file in ``masks/`` is one object (nonzero pixels); they are combined into one
    instance label image.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a folder.")
        self.samples = sorted(p for p in self.root.iterdir() if (p / "images").is_dir())
        if not self.samples:
            raise InputError(f"{self.root}: no <id>/images/ folders (DSB2018 layout) inside.")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        folder = self.samples[index]
        image_files = _image_files(folder / "images", "*")
        if not image_files:
            raise InputError(f"{folder / 'images'}: no image file.")
        image = read_image(image_files[0])
        labels = np.zeros(image.shape[:2], dtype=np.int32)
        for number, mask_file in enumerate(_image_files(folder / "masks", "*"), start=1):
            mask = np.asarray(read_image(mask_file))
            if mask.ndim == 3:
                mask = mask[..., 0]
            labels[(mask > 0) & (labels == 0)] = number
        return Sample(image, labels, folder.name)


class ClassMaskFolders(Sequence):
    """Images in one folder and one mask folder per class, merged into one labelled sample.

    Each class's masks pair with the images by name as in :class:`ImageMaskFolder`. The
    objects of all classes become one label image (each class's ids follow the previous
    class's; where objects of two classes overlap, the earlier class keeps the pixel), and
    the sample's ``classes`` names each object's class. An image needs a mask in every
    class folder.

    Parameters
    ----------
    images:
        The image folder.
    masks:
        Class name -> its mask folder, in order of precedence.
    pattern:
        Glob for the image files to take, e.g. ``"training__*"``.

    Examples
    --------
    mnfinder's nuclei and micronuclei, as a model with two classes learns them:

    >>> data = ClassMaskFolders(
    ...     "mnfinder/images",
    ...     {"nucleus": "mnfinder/nuclei_labels", "micronucleus": "mnfinder/micronuclei_labels"},
    ...     pattern="training__*",
    ... )  # doctest: +SKIP
    >>> sorted(set(data[0].classes.values()))  # doctest: +SKIP
    ['micronucleus', 'nucleus']
    """

    def __init__(
        self,
        images: str | Path,
        masks: dict[str, str | Path],
        *,
        pattern: str = "*",
        cache: bool = True,
    ) -> None:
        if not masks:
            raise InputError(f"{images}: no class mask folder given.")
        self.class_names = tuple(masks)
        self.folders = {
            name: ImageMaskFolder(images, folder, pattern=pattern, cache=False)
            for name, folder in masks.items()
        }
        first = self.folders[self.class_names[0]]
        self.images = [image for image, _ in first.pairs]
        for name, folder in self.folders.items():
            paired = {image for image, _ in folder.pairs}
            missing = [image.name for image in self.images if image not in paired]
            if missing or len(paired) != len(self.images):
                absent = (
                    missing[0]
                    if missing
                    else sorted({i.name for i in paired} ^ {i.name for i in self.images})[0]
                )
                raise InputError(f"{absent}: no mask for class {name!r} in {masks[name]}.")
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = None
        labels, classes = None, {}
        for name in self.class_names:
            sample = self.folders[name][index]
            if labels is None:
                image, labels = sample.image, np.zeros(sample.labels.shape, np.int32)
            own = np.asarray(sample.labels)
            free = (own > 0) & (labels == 0)
            ids, inverse = np.unique(own[free], return_inverse=True)
            start = int(labels.max())
            labels[free] = start + 1 + inverse
            classes.update({start + 1 + i: name for i in range(ids.size)})
        merged = Sample(image, labels, self.images[index].stem, classes)
        if self._cache is not None:
            self._cache[index] = merged
        return merged

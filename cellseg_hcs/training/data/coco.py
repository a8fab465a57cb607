"""COCO instance annotations (the LIVECell / EVICAN layout): read, and write from labels."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

from ...errors import InputError
from ...io.images import read_image
from .base import Sample


def coco_rle_decode(rle: dict) -> np.ndarray:
    """Binary mask from a COCO RLE dict (``counts`` as a list or COCO's compressed string)."""
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _uncompress_counts(counts)
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for count in counts:
        if value:
            flat[position : position + count] = True
        position += count
        value = not value
    return flat.reshape((height, width), order="F")


def coco_rle_encode(mask: np.ndarray, *, compress: bool = True) -> dict:
    """COCO RLE dict of a binary mask: runs alternate from zeros, column-major order."""
    mask = np.asarray(mask) > 0
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    size = [int(mask.shape[0]), int(mask.shape[1])]
    return {"size": size, "counts": _compress_counts(counts) if compress else counts}


def _compress_counts(counts: list[int]) -> str:
    # COCO's string form: each count (after the third, as a difference from the count two
    # before) in 5-bit groups, low first, 0x20 marking "more follows", offset by 48.
    chars = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def _uncompress_counts(text: str) -> list[int]:
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            position += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _annotation_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, dict):
        if isinstance(segmentation["counts"], list) and not isinstance(segmentation["size"], list):
            raise InputError("COCO RLE without a size.")
        return coco_rle_decode(segmentation)
    mask = np.zeros((height, width), dtype=bool)
    for points in segmentation:
        xy = np.asarray(points, dtype=float).reshape(-1, 2)
        rows, cols = draw_polygon(xy[:, 1], xy[:, 0], shape=(height, width))
        mask[rows, cols] = True
    return mask


class CocoDataset(Sequence):
    """Images in a folder with instance annotations in a COCO JSON file (polygons or RLE).

    A file with two or more categories gives every object its category's name as its class
    (``Sample.classes``), which a model with a class head learns, in the order of the
    categories' ids (``class_names``); with one category the objects have no class. Crowd
    annotations (``iscrowd`` 1: a region of many objects, not one) are not objects.
    """

    def __init__(self, annotations: str | Path, images: str | Path) -> None:
        self.json_file = Path(annotations)
        self.images_dir = Path(images)
        try:
            coco = json.loads(self.json_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.json_file}: not a readable COCO JSON file ({exc}).") from exc
        if "images" not in coco or "annotations" not in coco:
            raise InputError(f"{self.json_file}: no 'images' or 'annotations' in it; not COCO.")
        self.images = sorted(coco["images"], key=lambda im: im["id"])
        self.annotations: dict[int, list[dict]] = defaultdict(list)
        for annotation in coco["annotations"]:
            if not annotation.get("iscrowd"):
                self.annotations[annotation["image_id"]].append(annotation)
        categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
        self.categories = dict(sorted(categories.items())) if len(categories) > 1 else {}

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The categories' names in the order of their ids (None: one category, no classes)."""
        return tuple(dict.fromkeys(self.categories.values())) or None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        info = self.images[index]
        image = read_image(self.images_dir / info["file_name"])
        height, width = info.get("height", image.shape[0]), info.get("width", image.shape[1])
        labels = np.zeros((height, width), dtype=np.int32)
        classes = {}
        for number, annotation in enumerate(self.annotations[info["id"]], start=1):
            labels[_annotation_mask(annotation, height, width) & (labels == 0)] = number
            if self.categories:
                category = annotation.get("category_id")
                if category not in self.categories:
                    raise InputError(
                        f"{self.json_file}: annotation {annotation.get('id')} has category "
                        f"{category!r}, which is not among its categories."
                    )
                classes[number] = self.categories[category]
        return Sample(image, labels, Path(info["file_name"]).stem, classes or None)


def labels_to_coco(
    labels: dict[str, np.ndarray],
    *,
    category: str = "nucleus",
    scores: dict | None = None,
    classes: dict[str, dict[int, str]] | None = None,
) -> dict:
    """A COCO dict (RLE masks) from ``{file_name: label image}``; reads back with CocoDataset.

    ``classes`` (``{file_name: {label: class name}}``) makes one category per class name
    (in order of first appearance); without it every object is ``category``.
    """
    names = list(dict.fromkeys(n for per in (classes or {}).values() for n in per.values()))
    category_of = {name: number for number, name in enumerate(names or [category], start=1)}
    images, annotations = [], []
    for image_id, (file_name, label_image) in enumerate(sorted(labels.items()), start=1):
        label_image = np.asarray(label_image)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": int(label_image.shape[0]),
                "width": int(label_image.shape[1]),
            }
        )
        for value in np.unique(label_image[label_image > 0]):
            mask = label_image == value
            rows, cols = np.nonzero(mask)
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_of[classes[file_name][int(value)]] if classes else 1,
                "segmentation": coco_rle_encode(mask),
                "area": int(mask.sum()),
                "bbox": [
                    int(cols.min()),
                    int(rows.min()),
                    int(cols.max() - cols.min() + 1),
                    int(rows.max() - rows.min() + 1),
                ],
                "iscrowd": 0,
            }
            if scores is not None:
                annotation["score"] = float(scores[file_name][int(value)])
            annotations.append(annotation)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": number, "name": name} for name, number in category_of.items()],
    }

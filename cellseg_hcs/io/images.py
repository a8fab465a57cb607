"""Reading and writing single image files (TIFF, PNG, and whatever bioio reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, SettingError

TIFF_SUFFIXES = {".tif", ".tiff"}
PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a numpy array (YX, or CYX / YXC as stored).

    TIFF goes through tifffile and PNG/JPEG through Pillow; anything else is handed to
    bioio, when installed, and read as its first scene, time point and Z plane (CYX).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file.")
    try:
        image = _read_pixels(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one sentence
        raise InputError(f"{path}: cannot be read as an image ({exc}).") from exc
    if image.ndim < 2 or image.size == 0:
        raise InputError(f"{path}: cannot be read as an image (no pixels in it).")
    return image


def _read_pixels(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tiff_planes(np.asarray(series.asarray()), series.axes, path)
    if suffix in PIL_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    return _read_with_bioio(path)


def tiff_planes(data: np.ndarray, axes: str, path: str | Path = "image") -> np.ndarray:
    """YX or CYX pixels from a TIFF series whose axes tifffile knows (``TZCYX``, ``YXS``...).

    The first time point is taken; a stack of several Z planes is refused in one sentence
    (segmentation is 2-D: give a projection or one plane); colour samples (S) are channels.
    With axes tifffile cannot name (``Q``, ``I``), the pixels are returned as stored and
    :func:`select_channel` tells the channel axis by its size.
    """
    if len(axes) != data.ndim or set(axes) - set("TZCSYX") or not {"Y", "X"} <= set(axes):
        return data
    if "T" in axes:
        data, axes = np.take(data, 0, axis=axes.index("T")), axes.replace("T", "")
    if "Z" in axes:
        planes = data.shape[axes.index("Z")]
        if planes > 1:
            raise InputError(
                f"{path}: a stack of {planes} Z planes; segmentation is 2-D, so "
                "give a projection (e.g. the maximum) or one plane."
            )
        data, axes = np.take(data, 0, axis=axes.index("Z")), axes.replace("Z", "")
    order = [axis for axis in axes if axis in "CS"] + ["Y", "X"]
    data = np.transpose(data, [axes.index(axis) for axis in order])
    return data.reshape((-1, *data.shape[-2:])) if data.ndim > 2 else data


def _read_with_bioio(path: Path) -> np.ndarray:
    try:
        from bioio import BioImage
    except ImportError as exc:
        raise InputError(
            f"{path}: {path.suffix or 'this'} files need bioio (pip install bioio and "
            "the bioio reader plugin for the format)."
        ) from exc
    image = BioImage(path)
    data = image.get_image_data("CYX", T=0, Z=0)
    return np.asarray(data)


def channel_names(path: str | Path) -> list[str] | None:
    """Channel names stored in the file, when the format has them (bioio), else None."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _tiff_channel_names(path)
    if path.suffix.lower() in PIL_SUFFIXES:
        return None
    try:
        from bioio import BioImage

        return [str(name) for name in BioImage(path).channel_names]
    except Exception:  # noqa: BLE001 - names are optional
        return None


def _tiff_channel_names(path: Path) -> list[str] | None:
    """Channel names from OME-TIFF (``Channel Name``) or ImageJ (``Labels``) metadata."""
    import re

    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                names = re.findall(r"<Channel\b[^>]*?\bName=\"([^\"]*)\"", tif.ome_metadata)
                if names:
                    return names
            labels = (tif.imagej_metadata or {}).get("Labels")
            if labels:
                return [str(label) for label in labels]
    except Exception:  # noqa: BLE001 - names are optional; the pixels are read elsewhere
        return None
    return None


def select_channel(
    image: np.ndarray, channel: int | str | None = None, names: list[str] | None = None
) -> np.ndarray:
    """One 2-D plane from a YX, CYX or YXC image (the channel axis is the shorter end one).

    ``channel`` is an index or a name from ``names``; with no channel, a multi-channel image
    gives its first channel, except RGB(A) images whose channels are equal (grayscale saved
    as colour), which give that plane.
    """
    image = np.asarray(image)
    image = np.squeeze(image) if image.ndim > 3 else image
    if image.ndim == 2:
        if channel not in (None, 0, "0"):
            raise SettingError(f"channel {channel!r} asked for, but the image has one channel.")
        return image
    if image.ndim != 3:
        raise InputError(f"expected a 2-D image with channels, got shape {image.shape}.")
    # The channel axis is the shorter of the first and the last (YXC when the last is).
    channels_last = image.shape[-1] < image.shape[0]
    planes = np.moveaxis(image, -1, 0) if channels_last else image
    if isinstance(channel, str) and not channel.isdigit():
        if not names or channel not in names:
            known = ", ".join(names) if names else "none stored in the file"
            raise SettingError(f"channel {channel!r} not found; channels are: {known}.")
        index = names.index(channel)
    else:
        index = int(channel) if channel is not None else 0
    if not 0 <= index < planes.shape[0]:
        raise SettingError(f"channel {index} asked for, but the image has {planes.shape[0]}.")
    return planes[index]


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image as a zlib-compressed TIFF, atomically (temporary name, then rename)."""
    import tifffile

    from .atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        # The temporary name does not end in .tif: say the format.
        tifffile.imwrite(tmp, labels, compression="zlib", ome=False, imagej=False)
    return path

"""The classic baseline: CellProfiler-style Otsu threshold + distance-transform watershed.

What IdentifyPrimaryObjects does with its usual settings for nuclei (smoothing, a global
Otsu threshold, declumping by shape with a watershed on the distance transform, holes
filled, small objects dropped), written with scikit-image and scipy. Used by
``speed.py`` as the reference every speed is divided by, in the same run.

    python benchmarks/classic.py IMAGES... --out FOLDER    # the baseline as a whole command
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

SMOOTHING_SIGMA = 1.0
MIN_DISTANCE = 5  # declumping: the least distance between two nuclei centres, in pixels
MIN_SIZE = 16


def smooth(image: np.ndarray) -> np.ndarray:
    """Gaussian smoothing of a float32 copy (IdentifyPrimaryObjects' threshold smoothing)."""
    return ndi.gaussian_filter(np.asarray(image, dtype=np.float32), SMOOTHING_SIGMA)


def foreground_and_distance(smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Otsu foreground (holes filled) and its Euclidean distance transform."""
    from skimage.filters import threshold_otsu

    mask = ndi.binary_fill_holes(smoothed > threshold_otsu(smoothed))
    return mask, ndi.distance_transform_edt(mask).astype(np.float32)


def declump(mask: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Watershed of the distance transform from its local maxima; small objects dropped."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    components, _ = ndi.label(mask)
    peaks = peak_local_max(
        distance, min_distance=MIN_DISTANCE, labels=components, exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= MIN_SIZE
    keep[0] = False
    new_ids = np.zeros(sizes.size, dtype=np.uint32)
    new_ids[keep] = np.arange(1, keep.sum() + 1)
    return new_ids[labels]


def segment(image: np.ndarray) -> np.ndarray:
    """Labels for one 2-D image."""
    return declump(*foreground_and_distance(smooth(image)))


def main(argv: list[str] | None = None) -> int:
    import tifffile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in args.images:
        labels = segment(tifffile.imread(path))
        tifffile.imwrite(args.out / f"{path.stem}_labels.tif", labels, compression="zlib")
    print(f"{len(args.images)} images in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

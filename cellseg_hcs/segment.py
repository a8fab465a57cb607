"""Segmenting image files: the library function behind ``cellseg-hcs segment``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io.images import channel_names, read_image, write_labels
from .model import Model, load_model


@dataclass
class SegmentResult:
    """What segmenting one file produced."""

    image: Path
    labels: Path
    count: int
    seconds: float


def segment_files(
    images: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | Path | Model = "nuclei",
    channel: int | str | None = None,
    backend: str = "auto",
    device: str | None = None,
    probabilities: bool = False,
    progress: bool = True,
) -> list[SegmentResult]:
    """Segment every image file and write ``out/<stem>_labels.tif`` for each.

    All inputs are checked to exist before any output is written.
    """
    import time

    from tqdm.auto import tqdm

    from .errors import InputError

    paths = [Path(p) for p in images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no such image file.")
    model = model if isinstance(model, Model) else load_model(model)
    out = Path(out)
    results = []
    for path in tqdm(paths, desc="segmenting", unit="image", disable=not progress):
        started = time.perf_counter()
        image = read_image(path)
        maps = model.predict_maps(image, channel, channel_names=channel_names(path),
                                  backend=backend, device=device)
        labels = model.labels_from_maps(maps)
        target = write_labels(out / f"{path.stem}_labels.tif", labels)
        if probabilities:
            write_labels(out / f"{path.stem}_probabilities.tif", maps[0].astype(np.float32))
        results.append(SegmentResult(path, target, int(labels.max()),
                                     time.perf_counter() - started))
    return results

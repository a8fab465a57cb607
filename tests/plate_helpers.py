"""Small plates with known objects, and a model whose labels are exactly known.

:func:`threshold_model` is a one-level UNet whose weights make both output maps
``sigmoid(k * (x - 0.5))`` of the normalized input, so its labels are the connected bright
regions of the image: on a field of separated bright disks, one object per disk. That gives
plate-run tests exact truth without depending on any trained weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg_hcs.io.convert import write_plate


def threshold_model():
    import torch

    from cellseg_hcs.model.model import Model, ModelInfo
    from cellseg_hcs.model.unet import UNet

    options = {"in_channels": 1, "out_channels": 2, "depth": 1, "width": 1, "norm": "none"}
    network = UNet(**options)
    with torch.no_grad():
        for conv in (network.down[0][0], network.down[0][3]):
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
        network.head.weight.fill_(40.0)
        network.head.bias.fill_(-20.0)
    info = ModelInfo(
        network=options,
        postprocess={
            "foreground_threshold": 0.5,
            "seed_threshold": 0.5,
            "min_size": 16,
            "fill_holes": True,
        },
    )
    return Model(network, info)


def disk_field(seed: int, count: int, shape=(128, 128), radius: int = 6) -> np.ndarray:
    """A uint16 field with ``count`` separated bright disks on a dim noisy background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 110, size=shape).astype(np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centers: list[tuple[int, int]] = []
    while len(centers) < count:
        c = tuple(int(v) for v in rng.integers(radius + 2, np.array(shape) - radius - 2))
        if all((c[0] - y) ** 2 + (c[1] - x) ** 2 > (2 * radius + 4) ** 2 for y, x in centers):
            centers.append(c)
    for y, x in centers:
        image[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = 1000 + 50 * len(centers)
    return image


def make_plate(
    path: Path,
    *,
    wells=("B02", "B03"),
    sites: int = 2,
    shape=(128, 128),
    ngff_version: str = "0.5",
    extra_channel: bool = False,
) -> dict:
    """Write a plate of disk fields; returns ``{(well, site): true object count}``."""
    truth, fields = {}, {}
    for w, well in enumerate(wells):
        for site in range(sites):
            count = 2 + (3 * w + site) % 5
            image = disk_field(100 * w + site, count, shape)
            truth[(well, site)] = count
            fields[(well, site)] = np.stack([image, image[::-1]]) if extra_channel else image
    names = ["DNA", "Actin"] if extra_channel else ["DNA"]
    write_plate(
        path, fields, channel_names=names, ngff_version=ngff_version, levels=2, chunk_size=64
    )
    return truth

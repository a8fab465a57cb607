"""A UNet whose output has the same height and width as its input, for any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMALIZATIONS = {
    "batch": lambda channels: nn.BatchNorm2d(channels),
    "group": lambda channels: nn.GroupNorm(min(8, channels), channels),
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=True),
    "none": lambda channels: nn.Identity(),
}


def _conv_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    bias = norm == "none"
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
        NORMALIZATIONS[norm](out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
        NORMALIZATIONS[norm](out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """UNet with configurable channels, depth, base width and normalization.

    The input is reflect-padded up to a multiple of ``2 ** (depth - 1)`` and the output
    cropped back, so the output always has the input's height and width.

    Parameters
    ----------
    in_channels, out_channels:
        Channels of the input image and of the output maps.
    depth:
        Number of resolution levels (``depth - 1`` poolings).
    width:
        Channels at the first level; each level below doubles it.
    norm:
        One of ``batch``, ``group``, ``instance`` or ``none``.
    stem:
        Space-to-depth factor of the input. With ``stem=2`` the UNet body runs at half
        resolution on 2x2 pixel blocks (about 4x fewer operations), and a light
        full-resolution branch restores sharp object edges before the output head.
        Nuclei of 10 px and more across lose nothing measurable to it (see the model card).
    classes:
        How many of the last output channels are class logits (0: none). They are returned
        as ``z_k - logsumexp_{j != k} z_j``, whose sigmoid is the softmax of the logits
        ``z``: every backend applies one sigmoid to all outputs, and the class channels come
        out as class probabilities that sum to 1 (``logsigmoid`` of them is ``log_softmax``).

    Examples
    --------
    >>> net = UNet(in_channels=1, out_channels=2, depth=3, width=8)
    >>> net(torch.zeros(1, 1, 37, 50)).shape
    torch.Size([1, 2, 37, 50])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        depth: int = 4,
        width: int = 16,
        norm: str = "batch",
        stem: int = 1,
        classes: int = 0,
    ) -> None:
        super().__init__()
        if norm not in NORMALIZATIONS:
            raise ValueError(f"norm must be one of {sorted(NORMALIZATIONS)}, not {norm!r}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if stem < 1:
            raise ValueError(f"stem must be at least 1, not {stem}")
        if not 0 <= classes <= out_channels or classes == 1:
            raise ValueError(f"classes must be 0 or 2 to {out_channels}, not {classes}")
        self.classes = classes
        self.depth = depth
        self.stem = stem
        widths = [width * 2**level for level in range(depth)]
        self.down = nn.ModuleList()
        previous = in_channels * stem * stem
        for channels in widths:
            self.down.append(_conv_block(previous, channels, norm))
            previous = channels
        self.up_convs = nn.ModuleList()
        self.up = nn.ModuleList()
        for channels in reversed(widths[:-1]):
            self.up_convs.append(nn.Conv2d(previous, channels, 1))
            self.up.append(_conv_block(2 * channels, channels, norm))
            previous = channels
        if stem > 1:
            refine = max(8, width // 2)
            self.full_resolution = nn.Sequential(
                nn.Conv2d(in_channels, refine, 3, padding=1), nn.ReLU(inplace=True)
            )
            self.refine = nn.Sequential(
                nn.Conv2d(previous + refine, refine, 3, padding=1), nn.ReLU(inplace=True)
            )
            previous = refine
        self.head = nn.Conv2d(previous, out_channels, 1)

    @property
    def multiple(self) -> int:
        """Height and width are padded internally to a multiple of this."""
        return self.stem * 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = -height % self.multiple
        pad_w = -width % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if height > pad_h and width > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        full = x
        if self.stem > 1:
            x = F.pixel_unshuffle(x, self.stem)
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up_conv, block in zip(self.up_convs, self.up):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([up_conv(x), skips.pop()], dim=1))
        if self.stem > 1:
            x = F.interpolate(
                x, scale_factor=float(self.stem), mode="bilinear", align_corners=False
            )
            x = self.refine(torch.cat([x, self.full_resolution(full)], dim=1))
        x = self.head(x)
        if self.classes:
            x = torch.cat([x[:, : -self.classes], class_logits(x[:, -self.classes :])], dim=1)
        return x[..., :height, :width]


def class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-channel logits whose sigmoid is the softmax of ``logits`` over dim 1.

    ``z_k - logsumexp_{j != k} z_j``: the sigmoid of it is ``exp(z_k) / sum_j exp(z_j)``.

    Examples
    --------
    >>> z = torch.tensor([[[[1.0]], [[3.0]], [[0.0]]]])
    >>> torch.allclose(torch.sigmoid(class_logits(z)), torch.softmax(z, dim=1))
    True
    """
    count = logits.shape[1]
    if count == 2:  # the other class alone: no log-sum-exp in the exported graph
        return logits - logits.flip(1)
    others = [
        _logsumexp(torch.cat([logits[:, :k], logits[:, k + 1 :]], dim=1)) for k in range(count)
    ]
    return logits - torch.cat(others, dim=1)


def _logsumexp(values: torch.Tensor) -> torch.Tensor:
    """``log(sum(exp(values), dim=1))`` with the largest value taken out first, written out
    so the exported graph is stable in every runtime (a fused ReduceLogSumExp may not be,
    in half precision: exp(12) is already beyond float16)."""
    largest = values.amax(dim=1, keepdim=True).detach()
    return largest + torch.log(torch.exp(values - largest).sum(dim=1, keepdim=True))

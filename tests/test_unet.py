"""The UNet keeps the input's height and width for every size, depth, stem and normalization."""

from __future__ import annotations

import pytest
import torch

from cellseg_hcs.errors import ModelError
from cellseg_hcs.model.architectures import build_network
from cellseg_hcs.model.unet import UNet


@pytest.mark.parametrize("height,width", [(1, 1), (7, 300), (37, 50), (64, 64), (129, 31)])
@pytest.mark.parametrize("depth,stem", [(1, 1), (3, 1), (4, 2), (3, 4)])
def test_output_has_the_input_size_for_any_size(height, width, depth, stem):
    net = UNet(in_channels=1, out_channels=2, depth=depth, width=4, stem=stem).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, height, width))
    assert out.shape == (2, 2, height, width)


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_every_normalization_builds_and_runs(norm):
    net = UNet(in_channels=3, out_channels=5, depth=3, width=8, norm=norm).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 40, 24)).shape == (1, 5, 40, 24)


def test_width_doubles_at_each_level():
    net = UNet(in_channels=1, depth=4, width=8)
    widths = [block[0].out_channels for block in net.down]
    assert widths == [8, 16, 32, 64]


def test_stem_runs_the_body_at_lower_resolution_and_keeps_a_full_resolution_branch():
    net = UNet(in_channels=1, depth=3, width=8, stem=2)
    assert net.down[0][0].in_channels == 4  # 2x2 pixel blocks of one channel
    assert net.multiple == 2 * 2**2
    assert hasattr(net, "full_resolution")


def test_output_does_not_depend_on_other_images_in_the_batch_in_eval_mode():
    torch.manual_seed(0)
    net = UNet(depth=3, width=4).eval()
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        alone = net(a)
        together = net(torch.cat([a, b]))[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("options", [{"depth": 0}, {"norm": "layer"}, {"stem": 0}])
def test_invalid_settings_are_refused(options):
    with pytest.raises(ValueError):
        UNet(**options)


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ModelError, match="unknown architecture 'resnet'.*unet"):
        build_network("resnet")

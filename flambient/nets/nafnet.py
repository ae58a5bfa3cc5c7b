"""`nafnet` family: a small NAFNet-style regression U-Net (after Chen et al., "Simple Baselines
for Image Restoration", ECCV 2022), run tiled with overlap.

- Blocks use SimpleGate, simplified channel attention (SCA) and LayerNorm2d written as plain
  ops (:mod:`flambient.nets.layers`), so ONNX export works (the reference implementation's
  LayerNorm is a custom autograd Function that does not export).
- Whole-image statistics: SCA multiplies features by a function of their spatial mean. A tile's
  mean is not the image's, so tiles would drift in colour. Here ``context(low)`` runs the same
  U-Net on a 128^2 low-resolution copy of the whole stack and returns every block's pooled
  statistic (concatenated, N x 352 for width 16); ``apply`` uses those instead of pooling the
  tile. ``forward`` does the same, so training and tiled inference see one model.
- Output: sRGB = clamp(encoded ambient + predicted residual, 0, 1).

Receptive field: 3 levels of 3x3 depthwise convolutions reach about +-30 px, so tiles with
32 px overlap agree closely but not bit-exactly (``tile_exact=False``); the spec's ``tile_tolerance``
is the bound the family test checks (measured maximum difference about 1e-6, see the README).
"""

from __future__ import annotations

from typing import Any

import torch

from ..stack import AMBIENT
from .layers import NAFUNet
from .registry import FlambientNet, ModelSpec, encode_rgb, encode_stack, register

LEVELS = 3

SPEC = ModelSpec(
    family="nafnet",
    description="NAFNet-style U-Net, whole-image channel attention (tiled with overlap)",
    size_multiple=2**LEVELS,
    tileable=True,
    overlap=32,
    context_size=128,
    half_precision=True,
    tile_exact=False,
    tile_tolerance=1e-4,
    exportable=True,
    export_note="context = the U-Net on the low-res copy (returns pooled statistics); apply = the U-Net on a tile",
)


@register
class NAFNetNet(FlambientNet):
    """NAFNet family; see the module docstring.

    Args:
        width: channels at full resolution (doubles per level).
        enc_blocks, mid_blocks, dec_blocks: NAF blocks per encoder level / middle / decoder level.
    """

    spec = SPEC

    def __init__(self, width: int = 16, enc_blocks: int = 1, mid_blocks: int = 1, dec_blocks: int = 1, **extra: Any) -> None:
        super().__init__(width=width, enc_blocks=enc_blocks, mid_blocks=mid_blocks, dec_blocks=dec_blocks, **extra)
        self.unet = NAFUNet(SPEC.in_channels, 3, width, LEVELS, enc_blocks, mid_blocks, dec_blocks)
        with torch.no_grad():  # start near "output = encoded ambient"
            self.unet.end.weight.mul_(0.1)
            self.unet.end.bias.zero_()
        self.stat_sizes = self.unet.stat_sizes()

    def context(self, low: torch.Tensor) -> torch.Tensor:
        """N x 13 x s x s linear stack -> N x sum(stat sizes): every block's pooled statistic."""
        _, stats = self.unet(encode_stack(low))
        return torch.cat(stats, dim=1)

    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Tile N x 13 x h x w (h, w multiples of 8) + statistics -> sRGB N x 3 x h x w in [0, 1]."""
        stats = list(ctx.to(x.dtype).split(self.stat_sizes, dim=1))
        delta, _ = self.unet(encode_stack(x), stats)
        return (encode_rgb(x[:, AMBIENT]).clamp(0.0, 1.0) + delta).clamp(0.0, 1.0)

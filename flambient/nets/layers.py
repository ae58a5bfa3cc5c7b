"""Building blocks shared by the model families (all written as plain, ONNX-exportable ops).

Nothing here uses custom autograd Functions, 5-D ``grid_sample`` or data-dependent Python
control flow, so every block traces with ``torch.onnx.export(dynamo=False)`` at opset 17.
Shapes are NCHW unless a docstring says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .. import colour

#: Rec. 709 luminance weights (from :mod:`flambient.colour`), applied to encoded RGB as a cheap luma.
LUMA_WEIGHTS = tuple(float(v) for v in colour.LUMA_WEIGHTS)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (process-wide), restoring the old value.

    CPU inference of per-pixel families runs on one thread: their ops are too small to split
    well, and ``process`` spends the other cores decoding the next set.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def conv_act(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """3x3 convolution (padding 1) followed by a LeakyReLU(0.1) when ``act``."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1)]
    if act:
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def luma(rgb: torch.Tensor, channel_axis: int = 1) -> torch.Tensor:
    """Weighted sum of three channels along ``channel_axis`` (kept as a size-1 axis)."""
    r, g, b = rgb.unbind(channel_axis)
    return (LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b).unsqueeze(channel_axis)


def pixel_index_grids(x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute pixel indices of a tile: rows (h,) and columns (w,), always float32 (exact to 2**24).

    ``x`` is the N x C x h x w tile, ``pos`` = ``[y0, x0, H, W]``. Row ``i`` of the tile is
    image row ``y0 + i``. Built with ``cumsum`` over a ones tensor so that ONNX export keeps
    ``h`` and ``w`` dynamic.
    """
    ones_h = torch.ones_like(x[0, 0, :, 0], dtype=torch.float32)
    ones_w = torch.ones_like(x[0, 0, 0, :], dtype=torch.float32)
    pos = pos.float()
    rows = ones_h.cumsum(0) - 1.0 + pos[0]
    cols = ones_w.cumsum(0) - 1.0 + pos[1]
    return rows, cols


def grid_interp(u: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear-interpolation index and weight on ``n`` nodes for continuous node coordinates ``u``.

    ``u`` is in node units (node ``k`` sits at ``u == k``); it is clamped to ``[0, n-1]``.
    Returns ``(lo, frac)``: int64 ``lo`` in ``[0, n-2]`` and float ``frac`` in [0, 1] so the
    value is ``(1-frac) * node[lo] + frac * node[lo+1]`` (requires ``n >= 2``).
    """
    u = u.clamp(0.0, float(n - 1))
    lo = u.floor().clamp(0.0, float(n - 2))
    return lo.long(), u - lo


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an N x C x H x W tensor, as plain ops (exportable)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """NAFNet's SimpleGate: split the channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """A NAFNet block (Chen et al., ECCV 2022) whose channel attention takes external statistics.

    Simplified channel attention normally multiplies the features by ``conv1x1(avgpool(x))``.
    A tile's average differs from the whole image's, so here the pooled vector is passed in
    (``stat``, N x C, taken from the whole image); with ``stat=None`` the block pools its own
    input and returns that vector, which is how whole-image statistics are collected.
    An optional ``cond`` vector (N x cond_dim) adds a FiLM-style shift (diffusion's gamma).
    """

    def __init__(self, c: int, expand: int = 2, cond_dim: int = 0) -> None:
        super().__init__()
        dw = c * expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Conv2d(dw // 2, dw // 2, 1)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cond = nn.Linear(cond_dim, c) if cond_dim > 0 else None
        self.stat_channels = dw // 2

    def forward(
        self, x: torch.Tensor, stat: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N x C x H x W; stat: N x (C*expand/2) or None; returns (output, pooled stat used)."""
        y = self.norm1(x)
        if self.cond is not None and cond is not None:
            y = y + self.cond(cond)[:, :, None, None]
        y = self.gate(self.conv2(self.conv1(y)))
        if stat is None:
            stat = y.mean(dim=(2, 3))
        y = y * self.sca(stat[:, :, None, None])
        y = self.conv3(y)
        x = x + y * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma, stat


class NAFUNet(nn.Module):
    """A small NAFNet U-Net (intro conv, ``levels`` encoder levels, middle, decoder, end conv).

    Downsampling is a 2x2 stride-2 convolution, upsampling a 1x1 convolution + PixelShuffle, so
    inputs must be multiples of ``2**levels``. ``forward(x, stats, cond)`` passes ``stats[i]`` to
    block ``i`` (see :class:`NAFBlock`; None = each block pools its own input) and returns the
    output and the list of statistics used, in block order.
    """

    def __init__(self, cin: int, cout: int, width: int = 16, levels: int = 3, enc_blocks: int = 1,
                 mid_blocks: int = 1, dec_blocks: int = 1, cond_dim: int = 0) -> None:
        super().__init__()
        self.levels = levels
        self.intro = nn.Conv2d(cin, width, 3, padding=1)
        self.end = nn.Conv2d(width, cout, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        c = width
        for _ in range(levels):
            self.encoders.append(nn.ModuleList([NAFBlock(c, cond_dim=cond_dim) for _ in range(enc_blocks)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.ModuleList([NAFBlock(c, cond_dim=cond_dim) for _ in range(mid_blocks)])
        for _ in range(levels):
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.ModuleList([NAFBlock(c, cond_dim=cond_dim) for _ in range(dec_blocks)]))

    def blocks(self) -> list[NAFBlock]:
        """Every block in the order ``forward`` visits them."""
        out: list[NAFBlock] = [b for level in self.encoders for b in level]  # type: ignore[misc]
        out += list(self.middle)  # type: ignore[arg-type]
        out += [b for level in self.decoders for b in level]  # type: ignore[misc]
        return out

    def stat_sizes(self) -> list[int]:
        """Channels of each block's channel-attention statistic, in block order."""
        return [b.stat_channels for b in self.blocks()]

    def forward(self, x: torch.Tensor, stats: list[torch.Tensor] | None = None,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: N x cin x H x W (H, W multiples of 2**levels) -> (N x cout x H x W, stats used)."""
        used: list[torch.Tensor] = []

        def run(block: nn.Module, y: torch.Tensor) -> torch.Tensor:
            y, st = block(y, None if stats is None else stats[len(used)], cond)
            used.append(st)
            return y

        y = self.intro(x)
        skips = []
        for level, down in zip(self.encoders, self.downs):
            for block in level:
                y = run(block, y)
            skips.append(y)
            y = down(y)
        for block in self.middle:
            y = run(block, y)
        for up, level, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = up(y) + skip
            for block in level:
                y = run(block, y)
        return self.end(y), used


def gamma_embedding(gamma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of a noise level (Palette conditions on it instead of a timestep).

    ``gamma``: shape (N,), values in (0, 1]; returns N x dim (dim even).
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=gamma.device) * (-math.log(1000.0) / max(half - 1, 1)))
    arg = gamma.float()[:, None] * 1000.0 * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


# Hash constants: a prime modulus below 2**31 so products of two residues fit in int64.
_P = 2147483647
_MIX = (73856093, 19349663, 83492791, 40503)


def _mix(h: torch.Tensor) -> torch.Tensor:
    """One nonlinear mixing round on int64 residues modulo 2**31-1 (quadratic, then MINSTD)."""
    h = torch.remainder(h * h + 12345, _P)
    return torch.remainder(h * 48271 + 1, _P)


def coordinate_noise(x: torch.Tensor, pos: torch.Tensor, channels: int, seed: int) -> torch.Tensor:
    """Standard-normal noise that depends only on ABSOLUTE pixel coordinates, channel and seed.

    For a tile ``x`` (N x C x h x w) at ``pos`` = ``[y0, x0, H, W]`` returns N x channels x h x w
    float32 noise; two tiles covering the same image pixel get the same value there, so a
    tiled diffusion sampler sees one noise field. Integer hash (int64 arithmetic modulo the
    prime 2**31-1, two nonlinear rounds) -> two uniforms -> Box-Muller.
    """
    rows, cols = pixel_index_grids(x, pos)
    yi = rows.round().long().view(1, 1, -1, 1)
    xi = cols.round().long().view(1, 1, 1, -1)
    ch = (torch.ones_like(x[0, :1, 0, 0]).repeat(2 * channels).cumsum(0) - 1.0).long().view(1, -1, 1, 1)
    h = torch.remainder(yi * _MIX[0] + xi * _MIX[1] + ch * _MIX[2] + (seed % _P) * _MIX[3] + 1, _P)
    h = _mix(_mix(h))
    u = (h.float() + 0.5) / float(_P)
    u1, u2 = u[:, 0::2], u[:, 1::2]
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.expand(x.shape[0], channels, -1, -1)


__all__ = [
    "LayerNorm2d",
    "NAFBlock",
    "NAFUNet",
    "SimpleGate",
    "conv_act",
    "coordinate_noise",
    "gamma_embedding",
    "grid_interp",
    "luma",
    "pixel_index_grids",
]

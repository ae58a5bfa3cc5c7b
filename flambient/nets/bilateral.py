"""`bilateral` family (the default): an HDRNet-style bilateral grid of affine colour transforms.

After Gharbi et al., "Deep Bilateral Learning for Real-Time Image Enhancement" (SIGGRAPH 2017).

- ``context(low)``: a small CNN on the encoded 256^2 stack predicts a bilateral grid
  ``N x (D*3*K) x G x G`` (default G=16 spatial cells, D=8 luma bins, K=7 inputs per affine
  row), fusing local features with a global (whole-image) feature vector.
- ``apply(x, ctx, pos)``: per pixel, a cheap pointwise MLP (13 -> 16 -> 7) on the encoded stack
  gives a guide value ``g`` in (0, 1) and six features (encoded ambient and flash RGB plus a
  learned residual that carries the window pull and mask); the grid is sliced trilinearly at
  the pixel's ABSOLUTE image coordinates ``((y0+i+0.5)/H, (x0+j+0.5)/W)`` and ``g``, and the
  resulting 3 x 7 affine matrix maps ``[features, 1]`` to sRGB, clamped to [0, 1].

``apply`` has two exact formulations of the same trilinear slice (equal to ~1e-6):

- **gather** (ONNX export, training, GPU): avoids 5-D ``grid_sample`` (TensorRT cannot
  convert it). The grid is interpolated along x for the tile's columns and packed so that one
  table row holds the 4 corners (bin lo/hi x grid row lo/hi) a pixel needs; each pixel does ONE
  contiguous gather and blends the corners with tent weights (a small batched matrix product).
- **blocks** (CPU inference, the default path of ``process``): inside one spatial cell of
  the grid (about 375 x 250 px of a 24 MP image) the 4 spatial corners are fixed, so the
  slice is dense algebra: ``Z = M @ (t (x) f)`` with ``t`` the pixel's D tent weights over the
  luma bins, ``f`` its 7 features and ``M`` the cell's 12 x (D*7) corner matrix, then a
  bilinear blend of Z's 4 corner outputs with per-row and per-column weights, and only the
  bins the chunk's pixels touch enter the product. No gather, no per-pixel small matrix
  product: about 0.06 s/MP on one CPU core against 0.34 s/MP on two for the gather path.

Everything is per pixel given ``pos``, so tiles equal the whole image up to float rounding
(``tile_exact``, overlap 0), and peak memory stays at a few dozen floats per pixel of a chunk.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..colour import srgb_encode_into
from ..stack import AMBIENT, FLASH
from .layers import LUMA_WEIGHTS, conv_act, grid_interp, pixel_index_grids, torch_threads
from .registry import ENCODE_MAX, RGB_CHANNELS, FlambientNet, ModelSpec, encode_stack, register

SPEC = ModelSpec(
    family="bilateral",
    description="HDRNet-style bilateral grid of affine transforms (default; fast, tile-exact)",
    size_multiple=1,
    tileable=True,
    overlap=0,
    context_size=256,
    half_precision=True,
    tile_exact=True,
    exportable=True,
    export_note="context and apply export separately; the slice is written with Gather ops",
)

#: Pixels per chunk of ``apply`` at inference (cache-sized: 16K px x 56 floats of ``t (x) f`` = 3.7 MB).
CHUNK_PIXELS = 1 << 14
#: Pixels per chunk when gradients are on (training crops; bounds autograd buffers).
TRAIN_CHUNK_PIXELS = 1 << 18
#: Per-pixel affine inputs: encoded ambient RGB, encoded flash RGB (each plus a learned residual), 1.
N_FEATURES = 7


def _in_export() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


@register
class BilateralNet(FlambientNet):
    """Bilateral-grid family; see the module docstring. Config kwargs are stored in model files.

    Args:
        grid_size: spatial cells of the grid per side (G).
        luma_bins: guide bins (D, >= 2).
        width: channels of the context CNN.
        hidden: hidden units of the per-pixel MLP.
    """

    spec = SPEC

    def __init__(self, grid_size: int = 16, luma_bins: int = 8, width: int = 64, hidden: int = 16, **extra: Any) -> None:
        super().__init__(grid_size=grid_size, luma_bins=luma_bins, width=width, hidden=hidden, **extra)
        if grid_size < 2 or luma_bins < 2:
            raise ValueError("grid_size and luma_bins must be at least 2")
        self.grid_size, self.luma_bins = grid_size, luma_bins
        self.n_coef = 3 * N_FEATURES
        c = SPEC.in_channels
        # --- context (low resolution, whole image)
        self.splat = nn.Sequential(conv_act(c, 16, 2), conv_act(16, 32, 2), conv_act(32, width, 2), conv_act(width, width, 2))
        self.local = nn.Sequential(conv_act(width, width), conv_act(width, width, act=False))
        self.global_conv = nn.Sequential(conv_act(width, width, 2), conv_act(width, width, 2))
        self.global_fc = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.1), nn.Linear(width, width))
        self.to_grid = nn.Conv2d(width, luma_bins * self.n_coef, 1)
        # --- apply (per pixel, full resolution)
        self.pw1 = nn.Linear(c, hidden)
        self.pw2 = nn.Linear(hidden, 7)
        self.guide_scale = nn.Parameter(torch.tensor(4.0))
        self._init_identity()

    def _init_identity(self) -> None:
        """Start as "output = encoded ambient": zero residuals, identity affine rows in every cell."""
        nn.init.normal_(self.to_grid.weight, std=1e-3)
        bias = torch.zeros(self.luma_bins, 3, N_FEATURES)
        for ch in range(3):
            bias[:, ch, ch] = 1.0
        with torch.no_grad():
            self.to_grid.bias.copy_(bias.flatten())
        nn.init.zeros_(self.pw2.weight)
        nn.init.zeros_(self.pw2.bias)

    # ------------------------------------------------------------------ context
    def context(self, low: torch.Tensor) -> torch.Tensor:
        """N x 13 x s x s linear stack -> bilateral grid N x (D*3*K) x G x G (K = 7)."""
        f = self.splat(encode_stack(low))
        f = F.adaptive_avg_pool2d(f, (self.grid_size, self.grid_size))
        loc = self.local(f)
        glob = self.global_fc(self.global_conv(f).mean(dim=(2, 3)))
        fused = F.leaky_relu(loc + glob[:, :, None, None], 0.1)
        return self.to_grid(fused)

    def context_parameters(self) -> list[nn.Parameter]:
        mods = (self.splat, self.local, self.global_conv, self.global_fc, self.to_grid)
        return [p for m in mods for p in m.parameters()]

    # ------------------------------------------------------------------ apply
    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Tile N x 13 x h x w (linear) + grid + pos [y0, x0, H, W] -> sRGB N x 3 x h x w in [0, 1]."""
        if not _in_export() and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32:
            return self._apply_blocks(x, ctx.to(x.dtype), pos)
        n, _, h, w = x.shape
        g = self.grid_size
        pos = pos.float()
        rows, cols = pixel_index_grids(x, pos)
        ylo, fy = grid_interp((rows + 0.5) / pos[2] * g - 0.5, g)
        xlo, fx = grid_interp((cols + 0.5) / pos[3] * g - 0.5, g)
        table = self._corner_table(ctx.to(x.dtype), xlo, fx)
        if _in_export():
            return self._slice_apply(x, table, ylo, fy)
        # Training (few big chunks: autograd overhead per op) or inference on a GPU.
        step = max(1, (TRAIN_CHUNK_PIXELS if torch.is_grad_enabled() else 4 * CHUNK_PIXELS) // max(1, n * w))
        return torch.cat([self._slice_apply(x[:, :, r : r + step], table, ylo[r : r + step], fy[r : r + step])
                          for r in range(0, h, step)], dim=2)

    def _guide_features(self, enc: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-pixel MLP: encoded stack -> (features, guide).

        ``enc`` holds the 13 encoded channels on axis ``dim``: 0 (13 x P) or -1 (... x 13).

        ``features`` has 7 channels on the same axis: encoded ambient RGB + residual, encoded
        flash RGB + residual, 1. ``guide`` (that axis removed) is in (0, 1), from the
        ambient's luma plus a learned offset.
        """
        if dim == -1:  # channels last: ... x 13
            o = self.pw2(F.relu(self.pw1(enc)))
        else:  # channels first: 13 x P
            h1 = torch.addmm(self.pw1.bias[:, None], self.pw1.weight, enc)
            o = torch.addmm(self.pw2.bias[:, None], self.pw2.weight, F.relu(h1))

        def ch(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
            return t.narrow(dim, a, b - a)

        amb = ch(enc, AMBIENT.start, AMBIENT.stop)
        flash = ch(enc, FLASH.start, FLASH.stop)
        feats = torch.cat([amb + ch(o, 0, 3), flash + ch(o, 3, 6), torch.ones_like(ch(o, 0, 1))], dim=dim)
        lum = (ch(amb, 0, 1) * LUMA_WEIGHTS[0] + ch(amb, 1, 2) * LUMA_WEIGHTS[1] + ch(amb, 2, 3) * LUMA_WEIGHTS[2])
        guide = torch.sigmoid(self.guide_scale * (lum - 0.5) + ch(o, 6, 7)).squeeze(dim)
        return feats, guide

    # ---------------------------------------------------------------- CPU inference: dense blocks
    def _apply_blocks(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """CPU inference form of :meth:`apply` (see the module docstring, "blocks").

        ``x`` N x 13 x h x w linear, ``ctx`` the grid N x (D*3*K) x G x G, ``pos`` [y0, x0, H, W]
        -> sRGB N x 3 x h x w in [0, 1] (a view of channels-last memory, so stitching H x W x 3
        is a plain copy). Works through chunks of at most :data:`CHUNK_PIXELS` pixels that never
        cross a grid cell, on ONE thread with torch's intra-op threads off: the ops are too
        small to split, and Python threads over chunks gained 1.1x on 2 cores for 1.6x the CPU
        time (GIL), CPU that ``process`` spends decoding the next set instead.
        """
        n, _, h, w = x.shape
        d, g, k = self.luma_bins, self.grid_size, N_FEATURES
        rows, cols = pixel_index_grids(x, pos.float())
        ylo, fy = grid_interp((rows + 0.5) / pos[2].float() * g - 0.5, g)
        xlo, fx = grid_interp((cols + 0.5) / pos[3].float() * g - 0.5, g)
        fy, fx = fy.to(x.dtype), fx.to(x.dtype)
        # M[b, r, c]: rows (corner dy, corner dx, out channel), columns (bin, feature) -> 12 x D*K.
        grid = ctx.reshape(n, d, 3, k, g, g)
        corners = torch.stack([grid[..., dy : dy + g - 1, dx : dx + g - 1] for dy in (0, 1) for dx in (0, 1)])
        mats = corners.permute(1, 5, 6, 0, 3, 2, 4).reshape(n, g - 1, g - 1, 12, d * k).contiguous()
        bins = torch.arange(d, dtype=x.dtype).view(d, 1)
        out = torch.empty(n, h, w, 3, dtype=x.dtype)  # channels last: callers stitch H x W x 3
        xs = x.numpy()
        with torch_threads(1), torch.inference_mode():
            for b in range(n):
                for c0, c1, xl in _runs(xlo):
                    for r0, r1, yl in _runs(ylo, max(1, CHUNK_PIXELS // (c1 - c0))):
                        blk = xs[b, :, r0:r1, c0:c1]
                        enc = torch.empty(blk.shape[0], (r1 - r0) * (c1 - c0), dtype=x.dtype)  # 13 x P
                        e = enc.numpy().reshape(blk.shape)
                        srgb_encode_into(blk[:RGB_CHANNELS], e[:RGB_CHANNELS], ENCODE_MAX)  # = encode_stack
                        e[RGB_CHANNELS:] = blk[RGB_CHANNELS:]
                        f, guide = self._guide_features(enc, dim=0)  # 7 x P, P
                        u = (guide * d - 0.5).clamp(0.0, d - 1.0)  # guide in bin units
                        # Only the bins some pixel of the chunk touches (2-4 of D in most chunks).
                        lo, hi = (int(v) for v in torch.aminmax(u))
                        lo, hi = min(lo, d - 2), min(hi + 1, d - 1)
                        t = F.relu(1.0 - (u - bins[lo : hi + 1]).abs())  # bins x P tent weights
                        m = mats[b, yl, xl, :, lo * k : (hi + 1) * k]  # 12 x bins*K
                        z = (m @ (t[:, None] * f[None]).reshape(-1, f.shape[1])).view(2, 2, 3, r1 - r0, c1 - c0)
                        top = z[0, 0] + (z[0, 1] - z[0, 0]) * fx[c0:c1]
                        bottom = z[1, 0] + (z[1, 1] - z[1, 0]) * fx[c0:c1]
                        rgb = (top + (bottom - top) * fy[r0:r1, None]).clamp_(0.0, 1.0)
                        out[b, r0:r1, c0:c1] = rgb.permute(1, 2, 0)
        return out.permute(0, 3, 1, 2)  # N x 3 x h x w view of channels-last memory

    def _corner_table(self, ctx: torch.Tensor, xlo: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """Pack the grid for a tile's columns: one row of 84 values per (n, bin, grid row, column).

        ``ctx``: N x (D*3*K) x G x G; ``xlo``/``fx``: the (w,) x-interpolation of the tile's
        columns. Row ``((n*(D-1) + b)*(G-1) + r)*w + j`` holds, ordered (out channel c, corner q,
        input k), the x-interpolated coefficients of the 4 corners q = (b, r), (b, r+1),
        (b+1, r), (b+1, r+1), so a pixel needs ONE contiguous gather.
        """
        n = ctx.shape[0]
        d, g, k = self.luma_bins, self.grid_size, N_FEATURES
        grid = ctx.reshape(n, d, 3, k, g, g)
        fx = fx.to(grid.dtype).view(1, 1, 1, 1, 1, -1)
        gx = grid.index_select(5, xlo) * (1.0 - fx) + grid.index_select(5, xlo + 1) * fx  # N x D x 3 x K x G x w
        corners = [gx[:, db : db + d - 1, :, :, dr : dr + g - 1] for db in (0, 1) for dr in (0, 1)]
        packed = torch.stack(corners, dim=-1)  # N x (D-1) x 3 x K x (G-1) x w x 4
        return packed.permute(0, 1, 4, 5, 2, 6, 3).reshape(-1, 3 * 4 * k)

    def _slice_apply(self, x: torch.Tensor, table: torch.Tensor, ylo: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        """Per-pixel part of :meth:`apply` for rows whose grid-row indices are ``ylo``/``fy`` (h,)."""
        n, _c, h, w = x.shape
        d, g, k = self.luma_bins, self.grid_size, N_FEATURES
        feats, guide = self._guide_features(encode_stack(x).permute(0, 2, 3, 1), dim=-1)  # N x h x w (x 7)
        blo, fb = grid_interp(guide * d - 0.5, d)
        batch = (torch.ones_like(x[:, 0, 0, 0]).cumsum(0) - 1.0).long().view(-1, 1, 1)
        col = (torch.ones_like(x[0, 0, 0, :]).cumsum(0) - 1.0).long().view(1, 1, -1)
        wt = table.shape[0] // (n * (d - 1) * (g - 1))  # the tile's full width
        idx = ((batch * (d - 1) + blo) * (g - 1) + ylo.view(1, -1, 1)) * wt + col
        cells = table.index_select(0, idx.reshape(-1)).view(-1, 3, 4 * k)  # P x 3 x (4 corners * K)
        fy = fy.to(fb.dtype).view(1, -1, 1)
        wq = torch.stack([(1.0 - fb) * (1.0 - fy), (1.0 - fb) * fy, fb * (1.0 - fy), fb * fy], dim=-1)
        wf = (wq.unsqueeze(-1) * feats.unsqueeze(-2)).reshape(-1, 4 * k, 1)  # trilinear weight x feature
        out = torch.bmm(cells, wf.to(cells.dtype)).view(n, h, w, 3)
        return out.permute(0, 3, 1, 2).clamp(0.0, 1.0)



def _runs(lo: torch.Tensor, max_len: int | None = None) -> list[tuple[int, int, int]]:
    """Runs of equal values in a non-decreasing int vector: ``(start, end, value)``, each at most ``max_len`` long."""
    vals = lo.tolist()
    out: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(vals) + 1):
        if i == len(vals) or vals[i] != vals[start] or (max_len is not None and i - start >= max_len):
            out.append((start, i, int(vals[start])))
            start = i
    return out

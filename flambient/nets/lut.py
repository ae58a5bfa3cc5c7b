"""`lut` family: an image-adaptive 3D LUT (after Zeng et al., TPAMI 2020 "Learning Image-adaptive
3D Lookup Tables for High Performance Photo Enhancement in Real-time").

- ``context(low)``: a small CNN on the encoded 256^2 stack predicts, per image, the weights of
  ``n_luts`` learned basis LUTs (``lut_size``^3 x 3 each) and a 3 x 16 matrix that mixes the
  per-pixel features (encoded ambient, flash, window, mask x window, mask x ambient, 1) into the
  3-channel base the LUT reads. ``ctx`` is N x (n_luts + 48).
- ``apply(x, ctx, pos)``: per pixel, base = clamp(mix @ features, 0, 1); the image's LUT
  (weighted sum of the bases) is looked up trilinearly. The lookup is written with one Gather
  on a packed table (each LUT cell stores its 8 corners), not a 5-D ``grid_sample``, so it
  exports to ONNX and converts to TensorRT. Global and per pixel: tiles are exact.

:meth:`LutNet.regulariser` returns Zeng et al.'s smoothness (squared differences between
neighbouring LUT entries) and monotonicity (penalty on decreasing entries) terms: banding in
skies and walls is the known failure of unregularised LUTs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .layers import conv_act, grid_interp
from ..stack import AMBIENT, MASK, STACK_CHANNELS, WINDOW
from .registry import RGB_CHANNELS, FlambientNet, ModelSpec, encode_stack, register

SPEC = ModelSpec(
    family="lut",
    description="image-adaptive 3D LUT on a learned flash/ambient mix (global, fast)",
    size_multiple=1,
    tileable=True,
    overlap=0,
    context_size=256,
    half_precision=True,
    tile_exact=True,
    exportable=True,
    export_note="trilinear lookup written as a Gather on a packed table (no 5-D grid_sample)",
)

#: Features the base mix reads: amb(3) flash(3) window(3) mask*window(3) mask*amb(3) 1.
N_MIX = 16
CHUNK_PIXELS = 1 << 18
#: Weights of the regulariser terms (Zeng et al. use 1e-4 for smoothness, 10 for monotonicity).
LAMBDA_SMOOTH = 1e-4
LAMBDA_MONO = 10.0


def _in_export() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


@register
class LutNet(FlambientNet):
    """Image-adaptive 3D LUT family; see the module docstring.

    Args:
        lut_size: nodes per LUT axis (S; 17 or 33).
        n_luts: basis LUTs.
        width: channels of the context CNN.
    """

    spec = SPEC

    def __init__(self, lut_size: int = 17, n_luts: int = 4, width: int = 32, **extra: Any) -> None:
        super().__init__(lut_size=lut_size, n_luts=n_luts, width=width, **extra)
        if lut_size < 2 or n_luts < 1:
            raise ValueError("lut_size must be >= 2 and n_luts >= 1")
        self.lut_size, self.n_luts = lut_size, n_luts
        c = SPEC.in_channels
        self.body = nn.Sequential(
            conv_act(c, 16, 2), conv_act(16, width, 2), conv_act(width, width, 2),
            conv_act(width, width, 2), conv_act(width, 2 * width, 2),
        )
        self.head = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.LeakyReLU(0.1), nn.Linear(2 * width, n_luts + 3 * N_MIX))
        # Basis LUTs, indexed [k, out channel, r, g, b]; basis 0 starts as the identity.
        s = lut_size
        axis = torch.linspace(0.0, 1.0, s)
        ident = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=0)  # 3 x S x S x S
        basis = torch.zeros(n_luts, 3, s, s, s)
        basis[0] = ident
        self.luts = nn.Parameter(basis)
        self._init_head()

    def _init_head(self) -> None:
        """Start as "identity LUT of the encoded ambient": weight 1 on basis 0, mix = ambient."""
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=1e-3)
        bias = torch.zeros(self.n_luts + 3 * N_MIX)
        bias[0] = 1.0
        mix = torch.zeros(3, N_MIX)
        mix[0, 0] = mix[1, 1] = mix[2, 2] = 1.0
        bias[self.n_luts :] = mix.flatten()
        with torch.no_grad():
            last.bias.copy_(bias)

    # ------------------------------------------------------------------ context
    def context(self, low: torch.Tensor) -> torch.Tensor:
        """N x 13 x s x s linear stack -> N x (n_luts + 48): LUT weights, then the 3 x 16 mix."""
        return self.head(self.body(encode_stack(low)).mean(dim=(2, 3)))

    def context_parameters(self) -> list[nn.Parameter]:
        return list(self.body.parameters()) + list(self.head.parameters())

    def fused_luts(self, ctx: torch.Tensor) -> torch.Tensor:
        """Each image's LUT: N x 3 x S x S x S (weighted sum of the basis LUTs)."""
        w = ctx[:, : self.n_luts]
        return (w[:, :, None, None, None, None] * self.luts.unsqueeze(0)).sum(1)

    # ------------------------------------------------------------------ apply
    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Tile N x 13 x h x w (linear) + ctx -> sRGB N x 3 x h x w in [0, 1]; ``pos`` is unused (global)."""
        n, _, h, w = x.shape
        ctx = ctx.to(x.dtype)
        lut = self.fused_luts(ctx)
        s1 = self.lut_size - 1
        corners = [lut[:, :, dr : dr + s1, dg : dg + s1, db : db + s1] for dr in (0, 1) for dg in (0, 1) for db in (0, 1)]
        table = torch.stack(corners, dim=-1).permute(0, 2, 3, 4, 5, 1).reshape(-1, 24)  # cell -> 8 corners x 3
        mix = ctx[:, self.n_luts :].reshape(n, 1, 3, N_MIX)
        if _in_export() or n * h * w <= CHUNK_PIXELS:
            return self._lookup(x, table, mix)
        step = max(1, CHUNK_PIXELS // max(1, n * w))
        return torch.cat([self._lookup(x[:, :, r : r + step], table, mix) for r in range(0, h, step)], dim=2)

    def _lookup(self, x: torch.Tensor, table: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """Per-pixel base mix + trilinear lookup for the rows in ``x`` (N x 13 x h x w)."""
        n, _, h, w = x.shape
        s1 = self.lut_size - 1
        enc = encode_stack(x).permute(0, 2, 3, 1).reshape(n, h * w, STACK_CHANNELS)
        m = enc[..., MASK : MASK + 1]
        feats = torch.cat([enc[..., : RGB_CHANNELS], enc[..., WINDOW] * m, enc[..., AMBIENT] * m, torch.ones_like(m)], dim=-1)
        base = (mix * feats.unsqueeze(-2)).sum(-1).clamp(0.0, 1.0)  # N x P x 3
        lo, frac = grid_interp(base * s1, s1 + 1)
        batch = (torch.ones_like(x[:, 0, 0, 0]).cumsum(0) - 1.0).long().view(-1, 1)
        idx = ((batch * s1 + lo[..., 0]) * s1 + lo[..., 1]) * s1 + lo[..., 2]
        cells = table.index_select(0, idx.reshape(-1)).view(-1, 8, 3)
        fr, fg, fb = frac[..., 0].reshape(-1, 1), frac[..., 1].reshape(-1, 1), frac[..., 2].reshape(-1, 1)
        wr = torch.cat([1.0 - fr, fr], dim=1)
        wg = torch.cat([1.0 - fg, fg], dim=1)
        wb = torch.cat([1.0 - fb, fb], dim=1)
        wts = (wr[:, :, None, None] * wg[:, None, :, None] * wb[:, None, None, :]).reshape(-1, 1, 8)
        out = torch.bmm(wts, cells).view(n, h, w, 3)
        return out.permute(0, 3, 1, 2).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ training hooks
    def regulariser(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Smoothness + monotonicity penalty (scalar), weighted as in Zeng et al.

        With ``ctx`` (N x (n_luts+48)) it regularises the images' effective LUTs, else every
        basis LUT. Smoothness: mean squared difference of neighbouring entries along r, g, b.
        Monotonicity: mean of ReLU(entry - next entry) along every axis (outputs should not
        fall as an input rises).
        """
        luts = self.fused_luts(ctx) if ctx is not None else self.luts
        smooth = luts.new_zeros(())
        mono = luts.new_zeros(())
        for axis in (2, 3, 4):
            diff = luts.diff(dim=axis)
            smooth = smooth + diff.pow(2).mean()
            mono = mono + torch.relu(-diff).mean()
        return LAMBDA_SMOOTH * smooth + LAMBDA_MONO * mono

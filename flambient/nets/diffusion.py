"""`diffusion` family: conditional few-step image-to-image diffusion, run tiled with shared noise.

In the Palette line (Saharia et al., SIGGRAPH 2022): the denoiser is conditioned on the
continuous noise level ``gamma`` (signal fraction, "alpha-bar") through a sinusoidal
embedding rather than on a timestep, so any step schedule can be used at inference. In the
ResShift spirit (Yue et al., NeurIPS 2023) it diffuses the RESIDUAL between the target and a
base image (the sRGB-encoded ambient frame): the sampler starts from "base + noise", not from
a blank canvas. (Ideas only; no code from either project, ResShift's licence is non-commercial.)

- ``context(low)``: a small CNN on the encoded 256^2 stack -> a global vector (N x ctx_dim).
  The denoiser's channel attention takes its statistics from per-block projections of this
  vector (never from tile means), and every block is also shifted by the gamma embedding and
  the vector (FiLM-style), so tiles share all whole-image information.
- ``apply(x, ctx, pos)``: ``steps`` (default 4, at most 8) deterministic DDIM steps
  (:func:`flambient.nets.sampler.sample_ddim`) with x0-prediction on a cosine gamma schedule. The initial noise is a hash of ABSOLUTE pixel
  coordinates, channel and ``seed`` (:func:`flambient.nets.layers.coordinate_noise`), so two
  tiles covering a pixel start from the same value there.
- ``training_loss(x, y, *, ctx, pos)``: L1 between the predicted and true (scaled) residual at a
  random gamma, with Gaussian noise (what the trainer should call instead of its regression).

Tiles are not exact: each step has a receptive field of about +-14 px and errors from a
tile's border creep inwards step by step; with 32 px overlap the measured difference is
below the spec's ``tile_tolerance`` (see the README).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..stack import AMBIENT
from .layers import NAFUNet, conv_act, coordinate_noise, gamma_embedding
from .registry import FlambientNet, ModelSpec, encode_rgb, encode_stack, register
from .sampler import sample_ddim

LEVELS = 2
MAX_STEPS = 8
#: Default sampler steps (ResShift reports good results with 4-15; 4 keeps CPU cost down).
DEFAULT_STEPS = 4
#: Gamma (signal fraction) range of the cosine schedule: t=1 -> nearly pure noise, t=0 -> clean.
GAMMA_MIN, GAMMA_MAX = 1e-3, 0.9999

SPEC = ModelSpec(
    family="diffusion",
    description="few-step residual diffusion (gamma-conditioned, DDIM, coordinate-hashed noise)",
    size_multiple=2**LEVELS,
    tileable=True,
    overlap=32,
    context_size=256,
    half_precision=False,
    tile_exact=False,
    tile_tolerance=1e-4,
    exportable=True,
    export_note="the fixed-step sampler unrolls into the apply graph; the noise hash uses int64 Mul/Mod",
)


def gamma_at(t: torch.Tensor) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): gamma(t) = cos^2(pi t / 2), clamped; t in [0, 1]."""
    return torch.cos(t * (math.pi / 2)).pow(2).clamp(GAMMA_MIN, GAMMA_MAX)


@register
class DiffusionNet(FlambientNet):
    """Diffusion family; see the module docstring.

    Args:
        width: U-Net channels at full resolution.
        steps: sampler steps (1-8).
        ctx_dim: size of the global context vector.
        emb_dim: size of the gamma embedding.
        residual_scale: the residual (target - base, sRGB) is multiplied by this before diffusing.
        seed: seed of the coordinate-hashed initial noise.
    """

    spec = SPEC

    def __init__(self, width: int = 16, steps: int = DEFAULT_STEPS, ctx_dim: int = 64, emb_dim: int = 32,
                 residual_scale: float = 2.0, seed: int = 0, **extra: Any) -> None:
        super().__init__(width=width, steps=steps, ctx_dim=ctx_dim, emb_dim=emb_dim,
                         residual_scale=residual_scale, seed=seed, **extra)
        if not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}")
        self.steps, self.emb_dim, self.scale, self.seed = steps, emb_dim, residual_scale, seed
        c = SPEC.in_channels
        self.ctx_body = nn.Sequential(conv_act(c, 16, 2), conv_act(16, 32, 2), conv_act(32, 64, 2),
                                      conv_act(64, 64, 2), conv_act(64, ctx_dim, 2))
        self.ctx_head = nn.Sequential(nn.Linear(ctx_dim, ctx_dim), nn.LeakyReLU(0.1), nn.Linear(ctx_dim, ctx_dim))
        cond_dim = ctx_dim + emb_dim
        self.unet = NAFUNet(c + 3, 3, width, LEVELS, cond_dim=cond_dim)
        self.to_stats = nn.ModuleList([nn.Linear(ctx_dim, n) for n in self.unet.stat_sizes()])

    # ------------------------------------------------------------------ context
    def context(self, low: torch.Tensor) -> torch.Tensor:
        """N x 13 x s x s linear stack -> global context vector N x ctx_dim."""
        return self.ctx_head(self.ctx_body(encode_stack(low)).mean(dim=(2, 3)))

    def context_parameters(self) -> list[nn.Parameter]:
        return list(self.ctx_body.parameters()) + list(self.ctx_head.parameters())

    # ------------------------------------------------------------------ denoiser
    def denoise(self, enc: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Predict the clean scaled residual from ``z`` (N x 3 x h x w) at noise level ``gamma`` (N,)."""
        cond = torch.cat([gamma_embedding(gamma, self.emb_dim).to(enc.dtype), ctx], dim=1)
        stats = [proj(ctx) for proj in self.to_stats]
        out, _ = self.unet(torch.cat([enc, z], dim=1), stats, cond)
        return out

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """The image the residual is added to: sRGB-encoded ambient, clamped to [0, 1] (N x 3 x h x w)."""
        return encode_rgb(x[:, AMBIENT]).clamp(0.0, 1.0)

    def schedule(self) -> list[float]:
        """Gammas visited by the sampler, noisiest first, ending at the clean end (len steps+1)."""
        ts = torch.linspace(1.0, 0.0, self.steps + 1)
        return [float(g) for g in gamma_at(ts)]

    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Tile N x 13 x h x w (multiples of 4) + context + pos -> sRGB N x 3 x h x w in [0, 1].

        :func:`~flambient.nets.sampler.sample_ddim` from coordinate-hashed noise, the denoiser's
        x0 (the scaled residual) clamped to ``[-residual_scale, residual_scale]``.
        """
        ctx = ctx.to(x.dtype)
        enc = encode_stack(x)
        gammas = self.schedule()
        ones = torch.ones_like(x[:, 0, 0, 0])

        def model_fn(z: torch.Tensor, g: float) -> torch.Tensor:
            return self.denoise(enc, z, ones * g, ctx).clamp(-self.scale, self.scale)

        z = coordinate_noise(x, pos, 3, self.seed).to(x.dtype) * math.sqrt(1.0 - gammas[0])
        x0 = sample_ddim(model_fn, z, gammas)
        return (self.base(x) + x0 / self.scale).clamp(0.0, 1.0)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, *, ctx: torch.Tensor | None = None,
                      pos: torch.Tensor | None = None) -> torch.Tensor | None:
        """Diffusion loss: L1 of the x0 (scaled residual) prediction at a random gamma.

        ``x``: N x 13 x H x W linear stack (H, W multiples of 4); ``y``: N x 3 x H x W sRGB.
        ``ctx``: the context of the WHOLE image when ``x`` is a crop of it (as at inference);
        default: the context of ``x`` itself. ``pos`` is not needed (training noise is drawn,
        not hashed). Draws t ~ U(0, 1) per item and Gaussian noise from torch's global generator.
        """
        if ctx is None:
            ctx = self.context_of(x)
        r0 = (y - self.base(x)) * self.scale
        gamma = gamma_at(torch.rand(x.shape[0], device=x.device))
        g = gamma.view(-1, 1, 1, 1).to(x.dtype)
        z = g.sqrt() * r0 + (1.0 - g).sqrt() * torch.randn_like(r0)
        pred = self.denoise(encode_stack(x), z, gamma, ctx)
        return (pred - r0).abs().mean()

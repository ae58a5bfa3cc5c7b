"""Diffusion samplers as small pure functions (k-diffusion style: one signature, cited algorithm).

A sampler takes a denoiser ``model_fn(z, gamma) -> x0`` (the clean-signal prediction for the
noisy ``z`` at noise level ``gamma``), the starting noise ``x_T`` and the schedule, and
returns the sample. ``gamma`` is the signal fraction ("alpha-bar"): ``z = sqrt(gamma) x0 +
sqrt(1 - gamma) eps``, so gamma near 0 is pure noise and gamma near 1 is clean. No state, no
randomness: the same inputs give the same output, which is what lets tiles agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

#: ``model_fn(z, gamma)``: z N x C x h x w at noise level ``gamma`` -> predicted x0, same shape.
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def sample_ddim(model_fn: Denoiser, x_T: torch.Tensor, gammas: Sequence[float]) -> torch.Tensor:
    """Deterministic DDIM (Song, Meng & Ermon, ICLR 2021, eta = 0) with x0-prediction.

    ``x_T``: N x C x h x w, already scaled to the first noise level (``sqrt(1 - gammas[0])``
    times unit noise). ``gammas``: the levels visited, noisiest first (``len(gammas) - 1``
    steps, at least one). For consecutive levels g -> g':
    ``x0 = model_fn(z, g)``, ``eps = (z - sqrt(g) x0) / sqrt(1 - g)``,
    ``z' = sqrt(g') x0 + sqrt(1 - g') eps``. Returns the last step's x0 prediction (the
    clean end of the schedule), N x C x h x w.
    """
    if len(gammas) < 2:
        raise ValueError("sample_ddim needs at least two noise levels (one step)")
    z = x_T
    x0 = z
    for g, g_next in zip(gammas[:-1], gammas[1:]):
        x0 = model_fn(z, g)
        eps = (z - math.sqrt(g) * x0) / math.sqrt(1.0 - g)
        z = math.sqrt(g_next) * x0 + math.sqrt(1.0 - g_next) * eps
    return x0

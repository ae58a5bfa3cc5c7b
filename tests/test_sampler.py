"""The DDIM sampler as a pure function (flambient.nets.sampler), on denoisers whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from flambient.nets.sampler import sample_ddim

GAMMAS = [0.001, 0.2, 0.7, 0.9999]


def test_an_exact_denoiser_gives_its_clean_signal_from_any_noise() -> None:
    clean = torch.linspace(-1, 1, 2 * 3 * 4 * 5).view(2, 3, 4, 5)
    calls: list[float] = []

    def oracle(z: torch.Tensor, g: float) -> torch.Tensor:
        calls.append(g)
        return clean

    for seed in (0, 1):
        noise = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(sample_ddim(oracle, noise * math.sqrt(1 - GAMMAS[0]), GAMMAS), clean)
    assert calls == GAMMAS[:-1] * 2  # one call per step, noisiest level first


def test_steps_follow_the_ddim_update() -> None:
    """A linear denoiser x0 = a z: two steps computed by hand."""
    a = 0.5
    z0 = torch.full((1, 1, 2, 2), 0.8)
    g0, g1, g2 = 0.1, 0.5, 0.99
    x0 = a * z0
    eps = (z0 - math.sqrt(g0) * x0) / math.sqrt(1 - g0)
    z1 = math.sqrt(g1) * x0 + math.sqrt(1 - g1) * eps
    out = sample_ddim(lambda z, g: a * z, z0, [g0, g1, g2])
    assert torch.allclose(out, a * z1, atol=1e-7)
    assert not torch.allclose(out, x0)


def test_is_deterministic_and_needs_a_step() -> None:
    z = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))

    def model(x: torch.Tensor, g: float) -> torch.Tensor:
        return torch.tanh(x * (1 + g))

    assert torch.equal(sample_ddim(model, z, GAMMAS), sample_ddim(model, z, GAMMAS))
    with pytest.raises(ValueError, match="two noise levels"):
        sample_ddim(model, z, [0.5])

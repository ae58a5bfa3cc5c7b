"""Two context bugs (issue 13): the backend's device-context cache and diffusion's training context."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from flambient.inference import TorchBackend
from flambient.losses import LossWeights
from flambient.nets.registry import create_model
from flambient.training import TrainLoss


class _CopyingBackend(TorchBackend):
    """Stand-in for a CUDA or fp16 device: moving an array to the "device" always copies it."""

    def _to_dev(self, a: np.ndarray):  # type: ignore[no-untyped-def]
        return super()._to_dev(a).clone()


def test_backend_never_reuses_another_images_context() -> None:
    # Image after image, as in a batch: a fresh context array per image, dropped afterwards.
    # Python may give the next image's array the id() of the freed one; the backend must
    # still use the new context (the old cache keyed by id() kept the previous image's).
    torch.manual_seed(0)
    net = create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4).eval()
    backend = _CopyingBackend(net, "cpu")
    fresh = TorchBackend(net, "cpu")
    rng = np.random.default_rng(0)
    x = rng.random((1, 13, 16, 16), dtype=np.float32)
    pos = np.array([0, 0, 16, 16], dtype=np.float32)
    shape = backend.context(rng.random((1, 13, 256, 256), dtype=np.float32)).shape
    wrong = []
    for k in range(40):
        ctx = np.full(shape, (k % 7) * 0.1 - 0.3, dtype=np.float32)
        if not np.array_equal(backend.apply(x, ctx, pos), fresh.apply(x, ctx.copy(), pos)):
            wrong.append(k)
        del ctx
        gc.collect()
    assert not wrong, f"images {wrong} were rendered with another image's context"


def test_diffusion_training_context_is_the_whole_images() -> None:
    torch.manual_seed(0)
    net = create_model("diffusion", width=4, ctx_dim=8, emb_dim=8)
    seen: list[torch.Tensor | None] = []
    orig = net.training_loss

    def spy(x: torch.Tensor, target: torch.Tensor, *, ctx: torch.Tensor | None = None,
            pos: torch.Tensor | None = None) -> torch.Tensor | None:
        seen.append(None if ctx is None else ctx.detach().clone())
        return orig(x, target, ctx=ctx, pos=pos)

    net.training_loss = spy  # type: ignore[method-assign]
    loss_mod = TrainLoss(net, LossWeights())
    x = torch.rand(1, 13, 64, 64)
    x[:, :, :32] *= 0.05  # the crop (top half) is much darker than the whole image
    y = torch.rand(1, 3, 64, 64)
    loss = loss_mod(x, y, (0, 0, 32, 32))
    assert torch.isfinite(loss)
    assert seen and seen[0] is not None, "training_loss got no context: it used the crop's own"
    with torch.no_grad():
        whole = net.context_of(x)
        crop = net.context_of(x[:, :, :32, :32])
    assert torch.allclose(seen[0], whole)
    assert not torch.allclose(seen[0], crop)

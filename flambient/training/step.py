"""One training step as pure-ish pieces: the schedule, the loss module, a batch, the update.

- :func:`run_progress` / :func:`schedule_progress` / :func:`lr_at`: where the run is (the
  larger of the step and the time fraction; the schedule may follow the steps alone) and the
  learning rate there (linear warm-up, then cosine to ``min_lr_ratio``);
- :class:`TrainLoss`: the module DDP wraps; one ``forward`` returns the loss of a batch;
- :func:`make_batch`: the batch of step ``state.step`` (all randomness from ``(seed, rank, step)``);
- :func:`train_step`: one optimiser step on a batch (autocast, clipping, EMA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import Augment, PairStore, epoch_order, progressive_crop, sample_batch
from ..losses import LossWeights, blend_loss
from ..nets.registry import FlambientNet
from .config import TrainConfig
from .device import Dist
from .state import TrainState


def run_progress(step: int, seconds: float, cfg: TrainConfig) -> float:
    """Run progress (1.0 = done: the run stops): the larger of ``step / cfg.steps`` and the
    time fraction ``seconds / (60 * cfg.max_minutes)`` (each where set)."""
    fr = [step / cfg.steps] if cfg.steps else []
    fr += [seconds / (cfg.max_minutes * 60.0)] if cfg.max_minutes else []
    return max(fr)


def schedule_progress(step: int, seconds: float, cfg: TrainConfig) -> float:
    """Progress that sets the learning rate and the crop size: :func:`run_progress`, or
    ``step / cfg.steps`` alone when ``cfg.time_schedule`` is off and ``cfg.steps`` is set (the
    schedule is then the same whatever the machine's speed; the time budget only stops the run)."""
    if cfg.steps and not cfg.time_schedule:
        return step / cfg.steps
    return run_progress(step, seconds, cfg)


def cosine_decay(q: float, floor: float) -> float:
    """Half-cosine from 1 at ``q = 0`` down to ``floor`` at ``q = 1`` (a factor on the peak rate)."""
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * q))


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """Learning rate at run progress in [0, 1]: linear warm-up, then cosine to ``min_lr_ratio``."""
    p = min(max(progress, 0.0), 1.0)
    if cfg.warmup > 0 and p < cfg.warmup:
        return cfg.lr * max(p / cfg.warmup, 0.01)
    q = (p - cfg.warmup) / max(1e-9, 1.0 - cfg.warmup)
    return cfg.lr * cosine_decay(q, cfg.min_lr_ratio)


class TrainLoss(nn.Module):
    """Wraps a net so that one ``forward`` returns the training loss (what DDP wraps).

    With ``box`` = (y0, x0, h, w) the net works as at inference on a large image: the context
    comes from the WHOLE (augmented) image ``x`` and the loss is taken on the crop ``box`` at
    its position ``pos``. Without ``box`` the whole image is used. The loss is the family's
    ``training_loss(crop_x, crop_y, ctx=, pos=)`` when it returns one, else L1 + SSIM + CIELAB
    (:func:`flambient.losses.blend_loss`) on ``apply(crop_x, ctx, pos)``; plus ``regulariser(None)``
    when the family has one. ``parts`` holds the last call's loss terms (NaN for a family's own).
    """

    def __init__(self, net: FlambientNet, weights: LossWeights) -> None:
        super().__init__()
        self.net = net
        self.weights = weights
        self.parts: dict[str, float] = {}

    def forward(self, x: torch.Tensor, y: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``x`` N x 13 x H x W linear, ``y`` N x 3 x H x W sRGB -> scalar loss."""
        y0, x0, h, w = box if box is not None else (0, 0, x.shape[-2], x.shape[-1])
        xc, yc = x[:, :, y0 : y0 + h, x0 : x0 + w], y[:, :, y0 : y0 + h, x0 : x0 + w]
        ctx = self.net.context_of(x)  # as at inference: the WHOLE image's context
        pos = torch.tensor([float(y0), float(x0), float(x.shape[-2]), float(x.shape[-1])], device=x.device)
        loss = self.net.training_loss(xc, yc, ctx=ctx, pos=pos)
        if loss is None:
            loss, self.parts = blend_loss(self.net.apply(xc, ctx, pos), yc, self.weights)
        else:
            self.parts = {"l1": float("nan"), "ssim": float("nan"), "lab": float("nan")}
        reg = self.net.regulariser(None)
        return loss if reg is None else loss + reg


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for float parameters and buffers."""
    for (_, e), (_, p) in zip(ema.state_dict().items(), net.state_dict().items()):
        if e.dtype.is_floating_point:
            e.lerp_(p.detach(), 1.0 - decay)
        else:
            e.copy_(p)


@dataclass
class Batch:
    """One step's data: ``x`` N x 13 x H x W linear, ``y`` N x 3 x H x W sRGB (on the device),
    the loss ``box`` (y0, x0, h, w) or None, the crop side used and the run progress it was drawn at."""

    x: torch.Tensor
    y: torch.Tensor
    box: tuple[int, int, int, int] | None
    crop: int
    progress: float

    @property
    def size(self) -> int:
        """Images in the batch (this rank's)."""
        return int(self.x.shape[0])


def make_batch(store: PairStore, state: TrainState, cfg: TrainConfig, aug: Augment, d: Dist,
               spec_multiple: int, tileable: bool) -> Batch:
    """The batch of step ``state.step``: this rank's share of the epoch order, augmented.

    The crop grows with the run (:func:`flambient.data.progressive_crop`). With
    ``cfg.whole_context`` and a tileable family the batch holds whole images (their common
    size) and ``box`` is a random crop of a multiple of ``spec_multiple`` for the loss; else
    plain random crops. Every draw comes from ``default_rng([seed, rank, step])``.
    """
    order = epoch_order(len(store), state.epoch, cfg.seed, d.rank, d.world)
    idx = order[state.pos * cfg.batch : (state.pos + 1) * cfg.batch]
    if len(idx) == 0:
        idx = order[: cfg.batch]
    rng = np.random.default_rng([cfg.seed, d.rank, state.step])
    progress = schedule_progress(state.step, state.elapsed, cfg)
    m = max(1, spec_multiple)
    crop = progressive_crop(cfg.crop, progress, cfg.progressive_stages, m)
    box = None
    if cfg.whole_context and tileable:
        x, y = sample_batch(store, idx, 1 << 30, aug, rng)
        ch, cw = min(crop, x.shape[-2]), min(crop, x.shape[-1])
        ch, cw = max(m, ch // m * m), max(m, cw // m * m)
        box = (int(rng.integers(0, x.shape[-2] - ch + 1)), int(rng.integers(0, x.shape[-1] - cw + 1)), ch, cw)
    else:
        x, y = sample_batch(store, idx, crop, aug, rng)
    x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
    return Batch(x=x, y=y, box=box, crop=crop, progress=progress)


def train_step(model: nn.Module, state: TrainState, batch: Batch, cfg: TrainConfig, use_amp: bool) -> float:
    """One optimiser step of ``state`` on ``batch``; returns the loss (float).

    ``model`` is the :class:`TrainLoss` (or its DDP wrapper). Sets each param group's rate to
    ``lr_at(batch.progress) * scale``, runs the loss under bf16 autocast when ``use_amp``, clips
    gradients to ``cfg.grad_clip``, updates the EMA and restores a held single-image style
    (:meth:`TrainState.hold`). Raises FloatingPointError on a
    non-finite loss. Does not count the step (:meth:`TrainState.advance` does).
    """
    for g in state.opt.param_groups:
        g["lr"] = lr_at(batch.progress, cfg) * g.get("scale", 1.0)
    state.opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
        loss = model(batch.x, batch.y, batch.box)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {float(loss)} at step {state.step}")
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.params, cfg.grad_clip)
    state.opt.step()
    ema_update(state.ema, state.net, min(cfg.ema_decay, (1.0 + state.step) / (10.0 + state.step)))
    state.hold()
    return float(loss.detach())

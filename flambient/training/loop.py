"""The training loop: :func:`fit` puts :mod:`~flambient.training.state`, :mod:`~flambient.training.step`
and :mod:`~flambient.training.validation` together, and reports progress through a callback.

- paired flips, small rotations and window-mask dropout (:mod:`flambient.data`); with
  ``whole_context`` (default, tileable families) the context is computed from the WHOLE
  augmented image and ``apply`` runs on a random crop at its true position, exactly as tiled
  inference does; the crop grows from 1/2 to the full crop size over the run;
- loss: the family's ``training_loss`` hook or L1 + SSIM + CIELAB, plus its ``regulariser``;
- AdamW, linear warm-up then cosine decay over the run's *progress* (the larger of the step
  fraction and the time fraction, so ``--steps`` and ``--max-minutes`` both end on a low LR;
  with ``time_schedule`` off, the step fraction alone, the time only stopping the run),
  gradient clipping, EMA weights (what is validated and saved), bf16 autocast on CUDA;
- validation every epoch on whole images (dE2000, PSNR), a CSV log, a PNG plot, preview
  JPEGs, a checkpoint after each validation (``resume=True`` continues from it), optional
  early stopping (fine-tuning keeps the best validated weights);
- DDP through :mod:`torch.distributed` when started by ``torchrun`` (env ``WORLD_SIZE`` > 1):
  gloo on CPU, nccl on CUDA; each rank draws a different share of each epoch, rank 0 writes.

No drawing here: rank 0 calls ``progress(TrainProgress)`` after every step and validation;
the command (``flambient train`` / ``finetune``) draws the bar, or nothing under ``-q``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import Augment, PairStore
from ..dataset import PairItem
from ..errors import ConfigError, InputError
from ..log import get_logger
from ..losses import LossWeights
from ..nets.registry import FlambientNet
from .config import TrainConfig
from .device import Dist, all_agree, barrier, setup_distributed, teardown_distributed
from .state import TrainState, read_checkpoint, save_checkpoint
from .step import TrainLoss, lr_at, make_batch, run_progress, train_step
from .validation import LOG_CSV, ValPair, append_csv, load_val_pairs, validate

log = get_logger("train")

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainProgress:
    """What the loop reports after each step (and each validation) on rank 0.

    ``fraction``: run progress in [0, 1]; ``loss``: the mean training loss since the last log
    line, when one was just written (else None); ``validation``: the metrics of a validation
    that just ran (else None).
    """

    step: int
    fraction: float
    loss: float | None = None
    validation: dict[str, float] | None = None


#: The callback :func:`fit` sends :class:`TrainProgress` to.
ProgressFn = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """What :func:`fit` did. ``net`` holds the weights that were saved (EMA or best EMA)."""

    net: FlambientNet
    steps: int
    seconds: float
    images: int
    images_per_s: float
    crop: int
    metrics: dict[str, float]
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped: str


@dataclass
class _Run:
    """The fixed parts of one run that every step needs (built once by :func:`_prepare`)."""

    state: TrainState
    model: nn.Module
    loss: TrainLoss
    store: PairStore
    aug: Augment
    val_pairs: list[ValPair]
    steps_per_epoch: int
    val_every: int
    use_amp: bool


def fit(net: FlambientNet, train_items: Sequence[PairItem], val_items: Sequence[PairItem], cfg: TrainConfig,
        out: str | Path, resume: bool = False, progress: ProgressFn | None = None) -> TrainResult:
    """Train ``net`` in place on ``train_items``, validating on ``val_items``; write to ``out``.

    Writes ``out/checkpoint.pt`` (resumable), ``out/log.csv``, ``out/curves.png`` and
    ``out/previews/step_NNNNNN.jpg`` (rank 0). Returns the EMA net (the best validated one when
    ``cfg.keep_best`` or ``cfg.patience``). Saving the model file and card is the caller's job.
    Raises :class:`InputError` when ``out`` already holds a run (without ``resume``) or holds
    no checkpoint to resume.
    """
    out = Path(out)
    d = setup_distributed(cfg.device)
    try:
        run = _prepare(net, list(train_items), list(val_items), cfg, out, resume, d)
        return _loop(run, cfg, out, d, progress)
    finally:
        teardown_distributed(d)


def _prepare(net: FlambientNet, train_items: list[PairItem], val_items: list[PairItem], cfg: TrainConfig,
             out: Path, resume: bool, d: Dist) -> _Run:
    """Check ``out``, build (or resume) the state, wrap the loss for DDP, load the data."""
    ckpt_path = out / CHECKPOINT
    if not resume and (ckpt_path.exists() or (out / LOG_CSV).exists()):
        raise InputError("this folder already holds a training run", out,
                         "continue it with --resume, or choose another --out")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    if resume and not ckpt_path.is_file():
        raise InputError("nothing to resume: no checkpoint.pt here", out, "start without --resume")
    torch.manual_seed(cfg.seed)
    if cfg.train_bracket_ev_floor is not None:
        release = getattr(net, "set_training_bracket_floor", None)
        if release is None:
            raise ConfigError(f"train_bracket_ev_floor: the {net.spec.family} family has no bracket exposure floor")
        release(cfg.train_bracket_ev_floor)
    if resume:
        state = TrainState.from_checkpoint(read_checkpoint(ckpt_path, d.device), net, cfg, d.device)
        if d.main:
            log.info("resuming from step %d (%.1f min trained)", state.step, state.elapsed / 60)
    else:
        state = TrainState.create(net, cfg, d.device)
    loss = TrainLoss(net, LossWeights(cfg.loss_l1, cfg.loss_ssim, cfg.loss_lab, cfg.chroma_weight, cfg.loss_tone))
    model: nn.Module = loss
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(loss, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                    find_unused_parameters=cfg.context_only)
        if not resume:  # DDP broadcast rank 0's weights into net: start every rank's EMA from them
            state.ema.load_state_dict(net.state_dict())
    store = PairStore(train_items, cfg.max_side)
    per_rank = max(1, math.ceil(len(store) / d.world))
    steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch))
    return _Run(state=state, model=model, loss=loss, store=store,
                aug=Augment(hflip=cfg.hflip, vflip=cfg.vflip, rotate_deg=cfg.rotate_deg, mask_dropout=cfg.mask_dropout,
                            frame_dropout=cfg.frame_dropout, exposure_jitter=cfg.exposure_jitter,
                            unedit=cfg.unedit),
                val_pairs=load_val_pairs(val_items, cfg.val_max_side, cfg.val_without_mask) if d.main else [],
                steps_per_epoch=steps_per_epoch, val_every=cfg.val_every or steps_per_epoch,
                use_amp=cfg.amp and d.device.type == "cuda")


def _checkpoint(run: _Run, cfg: TrainConfig, out: Path, d: Dist, progress: ProgressFn | None) -> bool:
    """Rank 0: validate, report, checkpoint; returns True to stop early (False elsewhere)."""
    if not d.main:
        return False
    stop = validate(run.state, run.val_pairs, cfg, out, d.device)
    save_checkpoint(run.state, cfg, out / CHECKPOINT)
    if progress is not None:
        s = run.state
        progress(TrainProgress(s.step, min(1.0, run_progress(s.step, s.elapsed, cfg)), validation=s.history[-1]))
    return stop


def _loop(run: _Run, cfg: TrainConfig, out: Path, d: Dist, progress: ProgressFn | None) -> TrainResult:
    """Steps until the budget is spent or early stopping; then the last validation and the result."""
    s, net = run.state, run.state.net
    stopped, crop = "budget", cfg.crop
    run_loss: list[float] = []
    win_t, win_imgs = 0.0, 0
    while not all_agree(run_progress(s.step, s.elapsed, cfg) >= 1.0, d):
        t0 = time.perf_counter()
        batch = make_batch(run.store, s, cfg, run.aug, d, net.spec.size_multiple, net.spec.tileable)
        run_loss.append(train_step(run.model, s, batch, cfg, run.use_amp))
        dt = time.perf_counter() - t0
        end_epoch = s.advance(batch.size * d.world, dt, run.steps_per_epoch)
        crop, win_t, win_imgs = batch.crop, win_t + dt, win_imgs + batch.size
        logged = None
        if d.main and (s.step % cfg.log_every == 0 or end_epoch):
            logged = float(np.mean(run_loss))
            append_csv(out / LOG_CSV, {"step": s.step, "epoch": s.epoch, "seconds": s.elapsed,
                                       "lr": lr_at(batch.progress, cfg), "crop": crop, "loss": logged,
                                       **run.loss.parts, "images_per_s": win_imgs / max(win_t, 1e-9)})
            run_loss, win_t, win_imgs = [], 0.0, 0
        if d.main and progress is not None:
            progress(TrainProgress(s.step, min(1.0, run_progress(s.step, s.elapsed, cfg)), loss=logged))
        if s.step % run.val_every == 0 and all_agree(_checkpoint(run, cfg, out, d, progress), d):
            stopped = "early stopping"
            break
    if d.main and (not s.history or s.history[-1]["step"] != s.step):
        _checkpoint(run, cfg, out, d, progress)
    barrier(d)
    return _result(s, cfg, crop, stopped)


def _result(s: TrainState, cfg: TrainConfig, crop: int, stopped: str) -> TrainResult:
    """The :class:`TrainResult` of a finished run (the best EMA weights loaded when kept)."""
    keep = s.best_state is not None and (cfg.keep_best or cfg.patience)
    if keep:
        s.ema.load_state_dict(s.best_state)
    chosen = s.best if keep else (s.history[-1] if s.history else {})
    return TrainResult(net=s.ema, steps=s.step, seconds=s.elapsed, images=s.images,
                       images_per_s=s.images / max(s.elapsed, 1e-9), crop=crop, metrics=dict(chosen),
                       best_metrics=s.best, history=s.history, stopped=stopped)

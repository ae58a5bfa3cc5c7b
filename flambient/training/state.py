"""Everything a training run changes, in one record (:class:`TrainState`), and its checkpoint.

One checkpoint format, written and read here only: a dict of plain data and tensors
(``weights_only``-safe) with a format marker. Checkpoints written before the marker existed
(flambient 0.x, the same keys without ``format``) still load.

Randomness is not stored: every batch, crop and augmentation draws from
``numpy.random.default_rng([seed, rank, step])``, so the step number is the generator's state
and a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError, first_line
from ..nets.registry import FlambientNet
from .config import TrainConfig

#: Marker and version stored in every checkpoint this module writes.
CHECKPOINT_FORMAT = "flambient-train-state"
CHECKPOINT_VERSION = 1
#: Scalar counters of a state, as stored in a checkpoint (name -> type).
_COUNTERS: dict[str, type] = {"step": int, "epoch": int, "pos": int, "elapsed": float, "images": int,
                              "bad_evals": int}


@dataclass
class TrainState:
    """A training run in memory.

    Attributes:
        net: the net being trained (its parameters move every step).
        ema: the exponential moving average of ``net`` (what is validated and saved).
        opt: AdamW over the trainable parameters; each param group carries a ``scale`` that
            multiplies the scheduled learning rate (the style group's ``style_lr_scale``).
        params: the trainable parameters (what gradient clipping sees).
        step: optimiser steps done; epoch / pos: the epoch and the batch index inside it.
        elapsed: seconds spent in steps (validation excluded); images: images seen, all ranks.
        best: the best validation record so far (``{"step", "delta_e2000", "psnr", ...}``).
        best_state: the EMA weights of ``best`` (kept when ``keep_best`` or ``patience``).
        bad_evals: validations in a row without improvement; history: every validation record.
        single_pins: with ``cfg.hold_single_style``, what single images use of the style
            (:meth:`AdaptiveNet.single_effective`), restored after every step (:meth:`hold`).
    """

    net: FlambientNet
    ema: FlambientNet
    opt: torch.optim.Optimizer
    params: list[nn.Parameter]
    step: int = 0
    epoch: int = 0
    pos: int = 0
    elapsed: float = 0.0
    images: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    single_pins: dict[str, torch.Tensor] | None = None

    @classmethod
    def create(cls, net: FlambientNet, cfg: TrainConfig, device: torch.device) -> TrainState:
        """A fresh state: ``net`` moved to ``device`` in train mode, its optimiser, an EMA copy.

        ``cfg.context_only`` freezes everything outside ``net.context_parameters()`` and
        ``cfg.train_only`` everything it does not name (:func:`named_subset`); the
        ``net.style_parameters()`` learn at ``cfg.style_lr_scale`` x the rate, without weight
        decay. Raises :class:`ConfigError` when nothing is left to train.
        """
        net.to(device).train()
        if cfg.context_only:
            trainable = {id(p) for p in net.context_parameters()}
            for p in net.parameters():
                p.requires_grad_(id(p) in trainable)
        if cfg.train_only:
            chosen = named_subset(net, cfg.train_only)
            for p in net.parameters():
                p.requires_grad_(p.requires_grad and id(p) in chosen)
        params = [p for p in net.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the model has no trainable parameters with these settings")
        style_ids = {id(p) for p in net.style_parameters() if p.requires_grad} if cfg.style_lr_scale != 1.0 else set()
        rest = [p for p in params if id(p) not in style_ids]
        style = [p for p in params if id(p) in style_ids]
        groups = ([{"params": rest, "scale": 1.0}] if rest else []) + (
            [{"params": style, "scale": cfg.style_lr_scale, "weight_decay": 0.0}] if style else [])
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        ema = copy.deepcopy(net).eval()
        for p in ema.parameters():
            p.requires_grad_(False)
        state = cls(net=net, ema=ema, opt=opt, params=params)
        state.pin_single_style(cfg)
        return state

    def pin_single_style(self, cfg: TrainConfig) -> None:
        """With ``cfg.hold_single_style``, record what single images use of the net's style now.

        Raises :class:`ConfigError` for a family without single-image offsets, or when a
        trainable parameter would move single images anyway (the family's check)."""
        if not cfg.hold_single_style:
            return
        effective = getattr(self.net, "single_effective", None)
        if effective is None:
            raise ConfigError(f"hold_single_style: the {self.net.spec.family} family has no single-image style")
        trainable = {name for name, p in self.net.named_parameters() if p.requires_grad}
        self.single_pins = effective(trainable)

    def hold(self) -> None:
        """Restore the pinned single-image style in the net and its EMA (no-op without pins)."""
        if self.single_pins is not None:
            self.net.hold_single_style(self.single_pins)
            self.ema.hold_single_style(self.single_pins)

    @classmethod
    def from_checkpoint(cls, ck: dict[str, Any], net: FlambientNet, cfg: TrainConfig,
                        device: torch.device) -> TrainState:
        """The state a checkpoint dict holds, around ``net`` (built with the run's family and config)."""
        fmt, version = ck.get("format", CHECKPOINT_FORMAT), int(ck.get("format_version", 0))
        if fmt != CHECKPOINT_FORMAT:
            raise InputError(f"not a flambient training checkpoint (format {fmt!r})")
        if version > CHECKPOINT_VERSION:
            raise InputError("the checkpoint is from a newer flambient", hint="upgrade flambient")
        state = cls.create(net, cfg, device)
        state.net.load_state_dict(ck["net"])
        state.ema.load_state_dict(ck["ema"])
        state.opt.load_state_dict(ck["opt"])
        for name, kind in _COUNTERS.items():
            setattr(state, name, kind(ck[name]))
        state.best, state.history = dict(ck["best"]), list(ck["history"])
        state.best_state = ck.get("best_state")
        state.pin_single_style(cfg)  # the restored weights hold them already
        return state

    def to_checkpoint(self, cfg: TrainConfig) -> dict[str, Any]:
        """The checkpoint dict (plain data and tensors; the run's config included for the record)."""
        ck: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                              "net": self.net.state_dict(), "ema": self.ema.state_dict(),
                              "opt": self.opt.state_dict(), "best": self.best, "history": self.history,
                              "config": cfg.to_dict()}
        ck.update({name: getattr(self, name) for name in _COUNTERS})
        if self.best_state is not None:
            ck["best_state"] = self.best_state
        return ck

    def advance(self, images: int, seconds: float, steps_per_epoch: int) -> bool:
        """Count one finished step of ``images`` images taking ``seconds``; True at an epoch's end."""
        self.step += 1
        self.pos += 1
        self.images += images
        self.elapsed += seconds
        if self.pos >= steps_per_epoch:
            self.epoch, self.pos = self.epoch + 1, 0
            return True
        return False


def save_checkpoint(state: TrainState, cfg: TrainConfig, path: Path) -> None:
    """Write ``state.to_checkpoint(cfg)`` to ``path`` atomically."""
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state.to_checkpoint(cfg), tmp)


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (safe load: ``weights_only``), tensors on ``device``."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise InputError(f"checkpoint cannot be read ({first_line(exc, 160)})", path, "start without --resume") from None
    if not isinstance(ck, dict):
        raise InputError("not a flambient training checkpoint", path, "start without --resume")
    return ck


def named_subset(net: nn.Module, names: list[str]) -> set[int]:
    """Ids of the parameters of ``net`` named ``n`` or ``n.<anything>`` for some ``n`` in ``names``.

    Raises :class:`ConfigError` naming any entry that matches no parameter (``train_only``).
    """
    params = dict(net.named_parameters())

    def hits(n: str) -> list[str]:
        return [k for k in params if k == n or k.startswith(n + ".")]

    unknown = [n for n in names if not hits(n)]
    if unknown:
        tops = sorted({k.split(".")[0] for k in params})
        raise ConfigError(f"train_only names no parameter of this model: {', '.join(unknown)}",
                          hint=f"top-level parameters: {', '.join(tops)}")
    return {id(params[k]) for n in names for k in hits(n)}

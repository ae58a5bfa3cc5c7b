"""Training settings: :class:`TrainConfig` (every key a YAML config may set) and how it is built.

Defaults, then a base (the fine-tune defaults), then a YAML file, then command-line overrides;
every key type-checked by :mod:`flambient.schema`, every value range-checked, and the family's
``model_config`` tried on its constructor before any work (:class:`ConfigError` otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import Augment
from ..devices import parse_device
from ..errors import ConfigError, DeviceError, first_line
from ..schema import Field, dataclass_fields
from ..schema import validate as validate_schema


@dataclass
class TrainConfig:
    """Every training setting; a YAML config file may set any of these keys (others are errors).

    Budgets: the run stops at ``steps`` optimiser steps or ``max_minutes`` of training time
    (time spent in steps, validation excluded), whichever comes first (0 = no limit of that
    kind; with neither, :func:`make_config` sets 1000 steps). The schedule (learning rate,
    growing crop) follows the larger of the two fractions, so either budget ends on a low rate;
    with ``time_schedule`` off and ``steps`` set it follows the steps alone and ``max_minutes``
    only stops the run: a re-run on a machine of another speed or load then trains the same
    model, up to where its time runs out (fine-tuning's own budget). ``max_side`` downsizes training
    images on load; ``val_without_mask`` validates the way ``process`` runs (no window masks).
    """

    model: str = "bilateral"
    model_config: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    max_minutes: float = 0.0
    time_schedule: bool = True
    batch: int = 8
    crop: int = 256
    whole_context: bool = True
    progressive_stages: int = 3
    max_side: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    amp: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    val_every: int = 0
    val_max_side: int = 512
    patience: int = 0
    keep_best: bool = False
    context_only: bool = False
    train_only: list[str] = field(default_factory=list)  # parameter names (or name prefixes) to train; [] = all
    hold_single_style: bool = False  # adaptive: single images keep their style while the shared style trains
    # adaptive: the bracket exposure floor (stops) while training; the saved model keeps model_config's.
    # A binding floor passes no gradient to the exposure key, so the curve learns the key's work.
    train_bracket_ev_floor: float | None = None
    loss_l1: float = 1.0
    loss_ssim: float = 0.2
    loss_lab: float = 0.5
    chroma_weight: float = 2.0
    loss_tone: float = 0.0  # weight of losses.tone_distribution (sorted L*): the truth's spread of tones
    # Augmentation: the defaults are flambient.data.Augment's (one place).
    hflip: float = Augment.hflip
    vflip: float = Augment.vflip
    rotate_deg: float = Augment.rotate_deg
    mask_dropout: float = Augment.mask_dropout
    frame_dropout: float = Augment.frame_dropout
    exposure_jitter: float = Augment.exposure_jitter
    unedit: float = Augment.unedit
    val_without_mask: bool = True
    previews: int = 3
    log_every: int = 10
    device: str = "auto"
    few_pairs: int = 40
    style_lr_scale: float = 1.0
    style_steps: int = 0
    style_reg: float = 0.05
    cross_validate: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        checks = [
            (self.steps >= 0, "steps must be >= 0"),
            (self.max_minutes >= 0, "max_minutes must be >= 0"),
            (self.batch >= 1, "batch must be >= 1"),
            (self.crop >= 16, "crop must be >= 16 px"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup < 1, "warmup is a fraction of the run in [0, 1)"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (0 <= self.mask_dropout <= 1, "mask_dropout must be in [0, 1]"),
            (0 <= self.frame_dropout <= 1, "frame_dropout must be in [0, 1]"),
            (0 <= self.exposure_jitter <= 4, "exposure_jitter must be in [0, 4] stops"),
            (0 <= self.unedit <= 1, "unedit must be in [0, 1]"),
            (self.few_pairs >= 0, "few_pairs must be >= 0"),
            (self.style_steps >= 0, "style_steps must be >= 0"),
            (self.style_reg >= 0, "style_reg must be >= 0"),
            (self.style_lr_scale > 0, "style_lr_scale must be > 0"),
            (min(self.loss_l1, self.loss_ssim, self.loss_lab, self.loss_tone) >= 0, "loss weights must be >= 0"),
            (max(self.loss_l1, self.loss_ssim, self.loss_lab, self.loss_tone) > 0, "at least one loss weight must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        try:
            self.device = parse_device(self.device)  # the one device grammar (flambient.devices)
        except DeviceError as exc:
            raise ConfigError(f"device: {exc.message}", hint=exc.hint) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML- and weights_only-safe)."""
        return dataclasses.asdict(self)


def config_fields() -> dict[str, Any]:
    """Name -> type annotation string of every :class:`TrainConfig` key."""
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def config_schema() -> dict[str, Field]:
    """The declarative schema of a training config (:mod:`flambient.schema`), from the defaults."""
    return dataclass_fields(TrainConfig, train_bracket_ev_floor=Field(float, None, -3.0, 0.0, optional=True))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The keys a YAML training config sets, type-checked (ConfigError on any problem)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", p)
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML ({first_line(exc)})", p) from None
    return validate_schema(doc, config_schema(), p)


def make_config(path: str | Path | None = None, base: dict[str, Any] | None = None, default_steps: int = 1000,
                **overrides: Any) -> TrainConfig:
    """Build a :class:`TrainConfig`: defaults, then ``base``, then the YAML file, then overrides.

    Overrides that are None count as not given. With neither ``steps`` nor ``max_minutes`` set,
    the run is ``default_steps`` steps (0: left to the caller, which sets its own budget).
    Raises :class:`ConfigError` for malformed YAML, unknown keys, wrong types or bad values,
    including a ``model_config`` the family's constructor refuses.
    """
    defaults = TrainConfig()
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(read_config_file(path))
    for k, v in overrides.items():
        if v is not None:
            values[k] = v
    values = validate_schema(values, config_schema())
    cfg = dataclasses.replace(defaults, **values)
    if not cfg.steps and not cfg.max_minutes:
        cfg.steps = default_steps
    cfg.validate()
    if cfg.model_config:
        from ..nets.registry import create_model

        try:
            create_model(cfg.model, **cfg.model_config)  # the family's own checks, before any work
        except ConfigError as exc:
            raise ConfigError(exc.message, Path(path) if path is not None else None, exc.hint) from None
    return cfg

"""Training and fine-tuning (a closed group: nothing outside ``commands/`` and the benchmarks imports it).

==============  ===================================================================
config.py       :class:`TrainConfig`, ``make_config`` (defaults, base, YAML, overrides)
device.py       device choice and DDP rank (``torchrun``): ``Dist``, ``pick_device``
state.py        :class:`TrainState` (net, EMA, optimiser, counters, best) and its checkpoint
step.py         ``lr_at``, ``TrainLoss``, ``make_batch``, ``train_step``, ``ema_update``
validation.py   ``validate`` (EMA metrics, log, plot, previews), ``evaluate``, ``predict``
loop.py         ``fit``: the pieces put together; progress through a callback
train.py        ``train_dataset`` (``flambient train``), ``load_datasets``
finetune.py     ``finetune`` (``flambient finetune``): few-shot style fit or ``fit`` on many pairs
==============  ===================================================================
"""

from __future__ import annotations

from .config import TrainConfig, config_fields, config_schema, make_config, read_config_file
from .device import Dist, pick_device
from .loop import TrainProgress, TrainResult, fit
from .state import TrainState
from .step import TrainLoss, lr_at, make_batch, train_step
from .train import load_datasets, train_dataset
from .validation import evaluate, load_val_pairs, predict, validate

__all__ = [
    "Dist", "TrainConfig", "TrainLoss", "TrainProgress", "TrainResult", "TrainState", "config_fields",
    "config_schema", "evaluate", "fit", "load_datasets", "load_val_pairs", "lr_at", "make_batch", "make_config",
    "pick_device", "predict", "read_config_file", "train_dataset", "train_step", "validate",
]

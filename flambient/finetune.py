"""``flambient finetune``: adapt a trained model to a studio's own pairs, on a CPU, in minutes.

Steps: build a dataset from the pairs (any layout ``ingest --pairs`` reads, or a dataset folder
as is), hold out a fixed validation split, measure the base model on it (BEFORE), train with a
low learning rate and early stopping (optionally only the context branch), keep the best
validated EMA weights, measure again (AFTER), and write ``OUT/model.pt`` + ``OUT/model.yaml``
with both sets of metrics. When fine-tuning does not beat the base model on the held-out
pairs, the base weights are kept and the card says so.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .log import get_logger
from .train import TrainConfig, evaluate, fit, load_val_pairs, make_config, pick_device

log = get_logger("finetune")

#: Fine-tuning defaults (any of them can be overridden by a config file or an option).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "warmup": 0.02,
    "min_lr_ratio": 0.1,
    "patience": 4,
    "keep_best": True,
    "val_fraction": 0.2,
    "max_side": 384,
    "val_max_side": 384,
    "batch": 4,
    "crop": 128,
    "progressive_stages": 1,
    "ema_decay": 0.95,
    "rotate_deg": 2.0,
}


@dataclass
class FinetuneResult:
    """Metrics before and after, and what was kept."""

    before: dict[str, float]
    after: dict[str, float]
    kept: str
    steps: int
    seconds: float
    model_path: Path


def finetune_config(config: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the fine-tuning defaults, then the YAML file, then overrides."""
    return make_config(config, base=FINETUNE_DEFAULTS, **overrides)


def _dataset_from(pairs: Path, tmp: Path) -> Path:
    """``pairs`` itself when it is a dataset folder, else a dataset built from it in ``tmp``."""
    if (pairs / "dataset.yaml").is_file():
        return pairs
    if not pairs.is_dir():
        raise InputError("pairs folder not found", pairs)
    from .pairs import ingest_pairs

    res = ingest_pairs(pairs, tmp / "dataset")
    if not res.items:
        raise InputError("no usable pairs found", pairs,
                         "see `flambient ingest --help` for the layouts read (src/ + tgt/, NAME_src/NAME_tgt, set folders)")
    return res.dataset


def finetune(
    pairs: str | Path,
    out: str | Path,
    base: str | Path = "default",
    cfg: TrainConfig | None = None,
    command: str | None = None,
) -> FinetuneResult:
    """Fine-tune model ``base`` (shipped name or path) on ``pairs``; write the result to ``out``."""
    from .data import split_items
    from .dataset import load_dataset
    from .modelcard import command_line, read_card, write_card
    from .nets.registry import load_model, resolve_model_path, save_model

    cfg = cfg or finetune_config()
    pairs = Path(pairs)
    net, meta = load_model(base)
    base_path = resolve_model_path(base)
    cfg.model, cfg.model_config = net.spec.family, dict(net.config)
    device = pick_device(cfg.device)
    with tempfile.TemporaryDirectory(prefix="flambient-ft-") as td:
        dataset = _dataset_from(pairs, Path(td))
        items = load_dataset(dataset)
        if len(items) < 2:
            raise InputError("fine-tuning needs at least 2 pairs (one is held out for validation)", pairs)
        train_items, val_items = split_items(items, cfg.val_fraction)
        val_pairs = load_val_pairs(val_items, cfg.val_max_side, cfg.val_without_mask)
        net.to(device)
        before, _ = evaluate(net, val_pairs, device)
        log.info("base model on %d held-out pairs: dE2000 %.3f, PSNR %.2f dB", len(val_pairs),
                 before["delta_e2000"], before["psnr"])
        base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        res = fit(net, train_items, val_items, cfg, out)
        after, _ = evaluate(res.net, val_pairs, device)
        kept = "fine-tuned"
        final = res.net
        if after["delta_e2000"] >= before["delta_e2000"]:
            kept = "base (fine-tuning did not improve the held-out pairs)"
            net.load_state_dict(base_state)
            final, after = net, before
        log.info("after fine-tuning: dE2000 %.3f, PSNR %.2f dB (%s)", after["delta_e2000"], after["psnr"], kept)
        cmd = command or command_line()
        metrics = {"before": before, "after": after}
        path = save_model(final, out, extra={"train_config": cfg.to_dict(), "steps": res.steps, "metrics": metrics,
                                             "base": str(base_path), "command": cmd, "kept": kept})
        base_card = read_card(base_path.parent)
        write_card(
            out,
            family=net.spec.family,
            spec=net.spec.to_dict(),
            data={"pairs": str(pairs.resolve()), "items": len(items), "train_items": len(train_items),
                  "validation_items": [it.name for it in val_items], "split": "fixed by a hash of item names",
                  "base_model": str(base_path), "base_data": base_card.get("data", {})},
            commands=[*base_card.get("commands", []), cmd],
            metrics=metrics,
            training={"steps": res.steps, "minutes": res.seconds / 60.0, "images_per_s": res.images_per_s,
                      "stopped": res.stopped, "kept": kept, "context_only": cfg.context_only, "seed": cfg.seed,
                      "device": str(device), "config": cfg.to_dict()},
        )
    return FinetuneResult(before=before, after=after, kept=kept, steps=res.steps, seconds=res.seconds, model_path=path)

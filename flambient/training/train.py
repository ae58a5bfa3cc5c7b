"""``flambient train``: a fresh net of a family trained on dataset folders, written as a model folder."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..dataset import PairItem
from ..errors import ConfigError
from ..nets.registry import FlambientNet
from .config import TrainConfig
from .device import pick_device
from .loop import ProgressFn, TrainResult, fit


def load_datasets(datasets: str | Path | Sequence[str | Path]) -> list[PairItem]:
    """The items of one or several dataset folders, in order.

    Item names must be unique (they fix the validation split); when two folders hold the same
    name, every item of the later folder is renamed ``<folder name>/<item name>``.
    """
    from ..dataset import load_dataset

    folders = [datasets] if isinstance(datasets, (str, Path)) else list(datasets)
    items: list[PairItem] = []
    seen: set[str] = set()
    for folder in folders:
        batch = load_dataset(folder)
        if any(it.name in seen for it in batch):
            batch = [dataclasses.replace(it, name=f"{Path(folder).name}/{it.name}") for it in batch]
        seen.update(it.name for it in batch)
        items.extend(batch)
    return items


def train_dataset(
    dataset: str | Path | Sequence[str | Path],
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    command: str | None = None,
    extra_commands: Sequence[str] = (),
    progress: ProgressFn | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """``flambient train``: train a fresh ``cfg.model`` net on one or more dataset folders.

    With ``init`` (a trained model's name or path) the net starts from that model's weights
    and constructor config instead (its family must be ``cfg.model`` or ``cfg.model`` unset;
    keys of ``cfg.model_config`` override that config, e.g. a floor; parameters the init file
    predates start at a fresh model's values); the optimiser and the schedule start fresh. The card then records the init model's own
    commands before this run's, and an ``init`` entry naming it.

    Writes ``out/model.pt`` (EMA weights; train config, steps and metrics in its meta) and the
    ``out/model.yaml`` card. ``extra_commands`` (e.g. the ``synth`` line that made the data)
    are recorded in the card before the training command. ``progress`` receives the loop's
    :class:`~flambient.training.loop.TrainProgress` reports (rank 0).
    """
    from ..data import split_items
    from ..modelcard import command_line, read_card, write_card
    from ..nets.registry import create_model, save_model

    items = load_datasets(dataset)
    folders = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    train_items, val_items = split_items(items, cfg.val_fraction)
    torch.manual_seed(cfg.seed)
    if init is not None and not resume:
        net, earlier, extra = _from_init(init, cfg)
    else:
        net = create_model(cfg.model, **cfg.model_config)  # ConfigError when the family refuses model_config
        before = read_card(out) if resume else {}
        earlier = list(before.get("commands", []))
        extra = {"init": before["init"]} if "init" in before else {}
    res = fit(net, train_items, val_items, cfg, out, resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return res
    cmd = command or command_line()
    # A resumed run keeps the command lines of the run(s) it continues.
    commands = earlier + [c for c in extra_commands if c not in earlier] + [cmd]
    meta = {"train_config": cfg.to_dict(), "steps": res.steps, "metrics": res.metrics,
            "images_per_s": res.images_per_s, "command": cmd}
    save_model(res.net, out, extra=meta)
    write_card(
        out,
        family=net.spec.family,
        spec=net.spec.to_dict(),
        data={"dataset": ", ".join(str(Path(f).resolve()) for f in folders), "items": len(items), "train_items": len(train_items),
              "validation_items": [it.name for it in val_items], "split": "fixed by a hash of item names",
              "validation_max_side": cfg.val_max_side},
        commands=commands,
        metrics={k: res.metrics.get(k) for k in ("delta_e2000", "psnr", "images", "step")},
        training={"steps": res.steps, "minutes": res.seconds / 60.0, "images_seen": res.images,
                  "images_per_s": res.images_per_s, "final_crop": res.crop, "seed": cfg.seed,
                  "device": str(pick_device(cfg.device)), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                  "torch": torch.__version__, "config": cfg.to_dict()},
        extra=extra or None,
    )
    return res


def init_family(init: str | Path) -> str:
    """The family of the trained model ``init`` (name or path): the family a ``--init`` run trains."""
    from ..nets.registry import load_model

    return load_model(init)[0].spec.family


def _from_init(init: str | Path, cfg: TrainConfig) -> tuple[FlambientNet, list[str], dict[str, object]]:
    """The net to start from (a copy of model ``init``), the commands that made it, the card entry.

    Raises :class:`ConfigError` when ``init`` is of another family than ``cfg.model``.
    """
    from ..modelcard import read_card
    from ..nets.registry import create_model, load_model, resolve_model_path

    src, meta = load_model(init)
    family = src.spec.family
    if cfg.model and cfg.model != family:
        raise ConfigError(f"--init model is of family '{family}', not '{cfg.model}'",
                          hint="leave --family out, or pass the same family")
    cfg.model = family
    # The config's model_config keys override the init model's (e.g. a floor); weights are kept.
    # Parameters the init file predates start where a fresh model's do (a load hook switched
    # them off, which would also stop them from learning).
    merged = {**src.config, **cfg.model_config}
    predates = list(meta.get("predates", []))
    if merged != dict(src.config) or predates:
        net = create_model(family, **merged)  # ConfigError when the family refuses a key
        fresh = net.state_dict()
        net.load_state_dict({k: fresh[k] if k in predates else v for k, v in src.state_dict().items()})
        src = net
    cfg.model_config = dict(src.config)
    path = resolve_model_path(init)
    card = read_card(path.parent)
    steps = int(meta.get("steps", 0) or card.get("training", {}).get("steps", 0) or 0)
    entry = {"model": str(init), "family": family, "steps": steps,
             "validation": card.get("validation", {}), "created": card.get("created", "")}
    return src.train(), list(card.get("commands", [])), {"init": entry}

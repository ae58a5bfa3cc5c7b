"""Model cards: ``DIR/model.yaml``, the human-readable record written beside ``DIR/model.pt``.

A card says what the model is (family, input stack), what data it saw, the exact command lines
that made it (data generation and training, with seeds), its validation metrics and its
training throughput. Cards are plain YAML (read back with ``yaml.safe_load``).
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .io.atomic import atomic_write_text
from .stack import STACK_CHANNELS

#: What the fixed input stack holds, recorded in every card.
INPUTS = {
    "stack_channels": STACK_CHANNELS,
    "layout": "ambient RGB, flash RGB, window RGB (linear, exposure-normalised), window mask, "
              "has_flash, has_window, has_mask",
    "output": "sRGB final in [0, 1]",
}


def command_line(argv: list[str] | None = None) -> str:
    """The current process's command line as one shell-quoted string (``flambient ...``)."""
    args = list(sys.argv if argv is None else argv)
    if args and Path(args[0]).name in ("flambient", "__main__.py", "cli.py"):
        args[0] = "flambient"
    return " ".join(shlex.quote(a) for a in args)


def command_from_context(ctx: Any) -> str:
    """Rebuild a reproducible ``flambient <command> ...`` line from a click/Typer context.

    Uses the parsed parameter values (arguments, then options that differ from their
    defaults), so it is right however the command was invoked (console script, ``python -m``,
    a test runner). ``ctx`` is the ``typer.Context`` of the running command.
    """
    parts = ["flambient", str(ctx.info_name)]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            parts += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            continue
        if value is None or value == param.default or value in ((), []):
            continue
        opt = max((o for o in param.opts if o.startswith("--")), key=len, default=param.opts[0])
        if getattr(param, "is_flag", False):
            if value:
                parts.append(opt)
            elif param.secondary_opts:
                parts.append(param.secondary_opts[0])
        elif isinstance(value, (list, tuple)):
            for v in value:
                parts += [opt, str(v)]
        else:
            parts += [opt, str(value)]
    return " ".join(shlex.quote(a) for a in parts)


def _plain(x: Any) -> Any:
    """Make ``x`` YAML-safe: numpy / torch scalars to Python numbers, tuples to lists, paths to str."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (Path, str)):
        return str(x)
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    if isinstance(x, float):
        return round(x, 6)
    return x


def write_card(
    out_dir: str | Path,
    *,
    family: str,
    spec: dict[str, Any],
    data: dict[str, Any],
    commands: list[str],
    metrics: dict[str, Any],
    training: dict[str, Any],
    notes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/model.yaml`` atomically; returns its path.

    Args:
        family: registry family name.
        spec: the family's :class:`~flambient.nets.registry.ModelSpec` as a dict.
        data: what the model saw (dataset path, item counts, split, image size ...).
        commands: the exact command lines that made it, in order (e.g. synth then train).
        metrics: validation metrics (e.g. ``{"delta_e2000": 2.1, "psnr": 31.0}``, or
            ``{"before": {...}, "after": {...}}`` for a fine-tune).
        training: steps, seconds, throughput (images/s), device, seed, config.
    """
    doc = {
        "format": "flambient-model-card",
        "family": family,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": INPUTS,
        "spec": spec,
        "data": data,
        "commands": list(commands),
        "validation": metrics,
        "training": training,
    }
    if notes:
        doc["notes"] = list(notes)
    if extra:
        doc.update(extra)
    dest = Path(out_dir) / "model.yaml"
    return atomic_write_text(dest, yaml.safe_dump(_plain(doc), sort_keys=False, width=100))


def read_card(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/model.yaml`` (safe loader); an empty dict when there is none."""
    p = Path(out_dir) / "model.yaml"
    if not p.is_file():
        return {}
    doc = yaml.safe_load(p.read_text())
    return doc if isinstance(doc, dict) else {}


def update_card(out_dir: str | Path, **sections: Any) -> Path:
    """Add or replace top-level sections of an existing card (e.g. ``benchmark=...``)."""
    doc = read_card(out_dir)
    doc.update(_plain(sections))
    return atomic_write_text(Path(out_dir) / "model.yaml", yaml.safe_dump(doc, sort_keys=False, width=100))

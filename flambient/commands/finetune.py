"""``flambient finetune``: adapt a trained model to a studio's own pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import device_single_option, force_option, model_option, out_option


def register(app: typer.Typer) -> None:
    """Add the ``finetune`` command to ``app``."""

    @command(app, "finetune")
    def finetune_cmd(
        ctx: typer.Context,
        pairs: Path = typer.Option(..., "--pairs", help="Pairs folder (any `ingest --pairs` layout) or a dataset folder."),
        out: Path = out_option(..., "Model folder to write."),
        model: str = model_option("default", "Model to start from: a shipped name, a model folder or model.pt."),
        context_only: bool = typer.Option(False, "--context-only", help="Train only the context branch (fewer weights move)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Training config YAML (overrides fine-tune defaults)."),
        steps: Optional[int] = typer.Option(None, "--steps", min=0, help="Stop after this many optimiser steps."),
        max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0,
                                                    help="Stop after this much training time."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 5e-4)."),
        devices: Optional[str] = device_single_option(),
        force: bool = force_option("Replace a model already in --out."),
    ) -> None:
        """Fine-tune a model on your own edits; the card records held-out metrics before and after."""
        from ..training.finetune import finetune, finetune_config
        from ..modelcard import command_from_context
        from ._out import note
        from ._train_bar import train_bar

        if (out / "model.pt").exists() and not force:
            from ..errors import InputError

            raise InputError("a model is already in this folder", out,
                             "choose another --out, or add --force to replace it")
        cfg = finetune_config(config, steps=steps, max_minutes=max_minutes, seed=seed, lr=lr, device=devices,
                              context_only=context_only or None)
        with train_bar("finetune") as on_step:
            res = finetune(pairs, out, base=model, cfg=cfg, command=command_from_context(ctx), progress=note,
                           on_step=on_step)
        note(f"fine-tuned {res.steps} steps ({res.seconds / 60:.1f} min): held-out dE2000 "
             f"{res.before['delta_e2000']:.3f} -> {res.after['delta_e2000']:.3f}, PSNR "
             f"{res.before['psnr']:.2f} -> {res.after['psnr']:.2f} dB; kept {res.kept} -> {res.model_path}")

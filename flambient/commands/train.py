"""``flambient train``: train a model family on one or more dataset folders."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._command import command
from ._options import device_single_option, out_option


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @command(app, "train")
    def train_cmd(
        ctx: typer.Context,
        dataset: List[Path] = typer.Argument(..., help="Dataset folder(s) (from `ingest --pairs` or `synth --pairs`); "
                                             "several are trained on together."),
        out: Path = out_option(..., "Model folder to write (model.pt, model.yaml, log.csv, ...)."),
        family: Optional[str] = typer.Option(None, "--family",
                                             help="Model family to train (see `flambient models`); default bilateral."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Training config YAML (keys of TrainConfig)."),
        steps: Optional[int] = typer.Option(None, "--steps", min=0, help="Stop after this many optimiser steps."),
        max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0,
                                                    help="Stop after this much training time."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
        init: Optional[str] = typer.Option(None, "--init", help="Start from this trained model's weights (name or "
                                           "path; same family) with a fresh optimiser and schedule."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (weights, batches, augmentations)."),
        batch: Optional[int] = typer.Option(None, "--batch", "-b", min=1, help="Batch size per process."),
        crop: Optional[int] = typer.Option(None, "--crop", min=16, help="Final training crop side in pixels."),
        devices: Optional[str] = device_single_option(),
        data_command: Optional[List[str]] = typer.Option(
            None, "--data-command", help="Command line that made the dataset, recorded in the model card (repeatable)."),
    ) -> None:
        """Train a model on paired data; writes a model folder usable by `process --model DIR`.

        Under `torchrun --nproc_per_node N` every process runs this command and they train
        together (DDP; gloo on CPU, nccl on CUDA); rank 0 writes the outputs.
        """
        from ..modelcard import command_from_context
        from ..training import make_config, train_dataset
        from ._out import note
        from ._train_bar import train_bar

        from ..training.train import init_family

        base = {"model": init_family(init)} if init else None  # --init: the family is the model's
        cfg = make_config(config, base=base, model=family, steps=steps, max_minutes=max_minutes, seed=seed,
                          batch=batch, crop=crop, device=devices)
        with train_bar("train") as progress:
            res = train_dataset(dataset, cfg, out, resume=resume, command=command_from_context(ctx),
                                extra_commands=data_command or [], progress=progress, init=init)
        m = res.metrics
        note(f"trained {cfg.model} for {res.steps} steps ({res.seconds / 60:.1f} min, "
             f"{res.images_per_s:.2f} images/s): validation dE2000 {m.get('delta_e2000', float('nan')):.3f}, "
             f"PSNR {m.get('psnr', float('nan')):.2f} dB -> {out / 'model.pt'}")

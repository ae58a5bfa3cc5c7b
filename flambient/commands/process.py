"""``flambient process``: a shoot folder -> finished images, with presets, tiling and devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``process`` command to ``app``."""

    @app.command("process")
    def process_cmd(
        shoot: Path = typer.Argument(..., help="Shoot folder (frames, or single merged images)."),
        preset: str = typer.Option("studio", "--preset", "-p", help="Preset name (flambient presets) or a .yaml path."),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="Model name, model folder or .onnx file (default: the preset's)."),
        backend: str = typer.Option("torch", "--backend", help="torch or onnx."),
        devices: str = typer.Option("auto", "--devices", "-d", help="auto, cpu, cuda or cuda:0,1."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: SHOOT/final)."),
        force: bool = typer.Option(False, "--force", help="Redo sets whose final is up to date."),
        overwrite_user_files: bool = typer.Option(
            False, "--overwrite-user-files",
            help="Replace files under a final's name that flambient did not write or that were edited."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be done; write nothing."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Do only shard i of n (e.g. 1/3), by set order."),
        tile: Optional[int] = typer.Option(None, "--tile", help="Tile side in pixels (0 = whole image)."),
        overlap: Optional[int] = typer.Option(
            None, "--overlap", help="Model margin at tile borders in pixels (default: the model's spec)."),
        no_cache: bool = typer.Option(False, "--no-cache",
                                      help="Decode originals even when ingest --cache frames exist."),
        jobs: int = typer.Option(0, "--jobs", "-j", help="Decoder threads per set (0 = all cores)."),
    ) -> None:
        """Blend every bracket set of SHOOT into a final (skips sets already done).

        Exit 0 when all is done, 1 if any set failed, 4 if sets were left to another worker's lock.
        """
        import dataclasses
        import logging

        from ..config import load_preset
        from ..errors import ConfigError
        from ..log import get_logger
        from ..process import ProcessOptions, parse_shard

        p = load_preset(preset)
        if tile is not None and tile < 0:
            raise ConfigError("--tile must be 0 (whole image) or a positive number of pixels")
        if tile is not None and tile > 0 and tile < 128:
            raise ConfigError(f"--tile {tile} is too small", hint="use at least 128, or 0 for the whole image")
        if overlap is not None and overlap < 0:
            raise ConfigError("--overlap must be >= 0")
        if tile is not None or overlap is not None:
            t = p.tiling
            p = dataclasses.replace(p, tiling=dataclasses.replace(
                t, tile=(tile or None) if tile is not None else t.tile,
                overlap=overlap if overlap is not None else t.overlap))
        quiet = get_logger().getEffectiveLevel() > logging.INFO
        opts = ProcessOptions(preset=p, model=model, backend=backend, devices=devices, out=out, force=force,
                              dry_run=dry_run, shard=parse_shard(shard) if shard else None,
                              use_cache=not no_cache, decode_jobs=jobs or None,
                              overwrite_user_files=overwrite_user_files)
        summary = _run_with_progress(shoot, opts, quiet)
        _report(summary, dry_run, quiet)
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)


def _run_with_progress(shoot: Path, opts, quiet: bool):  # type: ignore[no-untyped-def]
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from ..log import console
    from ..process import process_shoot

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  disable=quiet or not console.is_terminal, transient=False) as bar:
        task = bar.add_task("all sets", total=None)
        per_set: dict = {}

        def on_plan(n: int) -> None:
            bar.update(task, total=n)

        def on_tile(name: str, done: int, total: int) -> None:
            if name not in per_set:
                per_set[name] = bar.add_task(f"  {name} tiles", total=total)
            bar.update(per_set[name], completed=done, total=total)

        def on_item(res) -> None:  # type: ignore[no-untyped-def]
            bar.update(task, advance=1, description=f"all sets (last: {res.name} {res.status})")
            if res.name in per_set:
                bar.remove_task(per_set.pop(res.name))

        return process_shoot(shoot, opts, progress=on_item, on_plan=on_plan, on_tile=on_tile)


def _report(summary, dry_run: bool, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape

    from ..log import console

    failed = [r for r in summary.results if r.status == "failed"]
    for r in failed:
        console.print(f"[bold red]failed:[/] {r.name}: {r.error}", soft_wrap=True)
    for r in summary.results:  # what this run could not do, also with -q
        if r.status in ("locked", "kept"):
            console.print(f"[bold yellow]{r.status}:[/] {escape(r.name)}: {escape(r.note or '')}", soft_wrap=True)
    for p in summary.problems:
        console.print(f"[bold red]error:[/] {escape(p)}", soft_wrap=True)
    if quiet:
        return
    if dry_run:
        for r in summary.results:
            console.print(f"{r.status:>13}  {r.name}" + (f"  -> {r.final}" if r.final else "")
                          + (f"  ({r.note})" if r.note else ""), soft_wrap=True)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items())) or "nothing to do"
    console.print(f"{counts} in {summary.seconds:.1f} s; finals in {summary.out}", soft_wrap=True)

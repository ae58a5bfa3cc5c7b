"""``flambient process``: a shoot folder -> finished images, with presets, tiling and devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._options import BackendChoice, devices_option, overlap_option, tile_option


def register(app: typer.Typer) -> None:
    """Add the ``process`` command to ``app``."""

    @app.command("process")
    def process_cmd(
        shoot: Path = typer.Argument(..., help="Shoot folder (frames, or single merged images)."),
        preset: str = typer.Option("studio", "--preset", "-p", help="Preset name (flambient presets) or a .yaml path."),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="Model name, model folder or .onnx file (default: the preset's)."),
        backend: BackendChoice = typer.Option(BackendChoice.torch, "--backend", help="Model runtime."),
        devices: str = typer.Option("auto", "--devices", "-d", callback=devices_option,
                                    help="auto, cpu, cuda or cuda:0,1."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: SHOOT/final)."),
        force: bool = typer.Option(False, "--force", help="Redo sets whose final is up to date."),
        overwrite_user_files: bool = typer.Option(
            False, "--overwrite-user-files",
            help="Replace files under a final's name that flambient did not write or that were edited."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be done; write nothing."),
        strip_gps: bool = typer.Option(False, "--strip-gps",
                                       help="Drop GPS coordinates (EXIF and XMP) from the finals' metadata."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Do only shard i of n (e.g. 1/3), by set order."),
        tile: Optional[int] = typer.Option(None, "--tile", callback=tile_option,
                                           help="Tile side in pixels, 128-16384 (0 = whole image)."),
        overlap: Optional[int] = typer.Option(
            None, "--overlap", callback=overlap_option,
            help="Model margin at tile borders in pixels, 0-512 (default: the model's spec)."),
        no_cache: bool = typer.Option(False, "--no-cache",
                                      help="Decode originals even when ingest --cache frames exist."),
        jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Decoder threads per set (0 = all cores)."),
        json_out: Optional[str] = typer.Option(
            None, "--json", metavar="PATH",
            help="Also write the run's summary as JSON to this file; '-' prints only the JSON, on stdout."),
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
        from ..tiling import tiling_problem

        p = load_preset(preset)
        if tile is not None or overlap is not None:
            t = p.tiling
            p = dataclasses.replace(p, tiling=dataclasses.replace(
                t, tile=(tile or None) if tile is not None else t.tile,
                overlap=overlap if overlap is not None else t.overlap))
        # The tile/overlap pair, before any work (the model's own margin and size multiple are
        # checked again once it is loaded, still before any set).
        problem = tiling_problem(p.tiling.tile, p.tiling.overlap)
        if problem is not None:
            raise ConfigError(problem[0], hint=problem[1])
        if strip_gps:
            p = dataclasses.replace(p, metadata=dataclasses.replace(p.metadata, strip_gps=True))
        shard_range = parse_shard(shard) if shard else None
        quiet = get_logger().getEffectiveLevel() > logging.INFO
        opts = ProcessOptions(preset=p, model=model, backend=backend.value, devices=devices, out=out, force=force,
                              dry_run=dry_run, shard=shard_range,
                              use_cache=not no_cache, decode_jobs=jobs or None,
                              overwrite_user_files=overwrite_user_files)
        summary = _run_with_progress(shoot, opts, quiet)
        _report(summary, dry_run, json_out)
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


def _report(summary, dry_run: bool, json_out: str | None) -> None:  # type: ignore[no-untyped-def]
    """Failures on stderr; the per-set results and counts (data) on stdout; JSON when asked.

    ``failed:``, ``kept:`` and ``locked:`` lines and the run's problems go to stderr also with
    ``-q`` (what this run could not do).
    """
    from rich.markup import escape
    from rich.table import Table

    from ..log import console
    from ..process import summary_doc
    from ._out import emit, json_to_stdout, quiet

    for r in summary.results:
        if r.status == "failed":
            console.print(f"[bold red]failed:[/] {r.name}: {r.error}", soft_wrap=True)
    for r in summary.results:  # what this run could not do, also with -q
        if r.status in ("locked", "kept"):
            console.print(f"[bold yellow]{r.status}:[/] {escape(r.name)}: {escape(r.note or '')}", soft_wrap=True)
    for p in summary.problems:
        console.print(f"[bold red]error:[/] {escape(p)}", soft_wrap=True)
    _report_inputs(summary.inputs, quiet())
    table = Table(title=f"{'dry run: ' if dry_run else ''}{summary.shoot}")
    for col in ("status", "set", "final", "note"):
        table.add_column(col)
    for r in summary.results:
        table.add_row(r.status, r.name, r.final or "", r.error or r.note or "")
    emit(summary_doc(summary), table, json_out)
    if not json_to_stdout(json_out) and not quiet():  # a note for people, on stderr
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items())) or "nothing to do"
        console.print(f"{counts} in {summary.seconds:.1f} s; finals in {summary.out}", soft_wrap=True)


def _report_inputs(inputs: list, quiet: bool) -> None:  # type: ignore[type-arg]
    """One line on where the input files went; the sets that hold files joined on weak evidence."""
    from ..accounting import unsure_sets
    from ..log import console

    if not inputs:
        return
    sets = {e["set"] for e in inputs if e.get("set")}
    shared = sum(1 for e in inputs if e.get("frames_in_set", 1) > 1)
    failed = sum(1 for e in inputs if "set" not in e and e["status"] == "failed")
    if not quiet:
        console.print(f"{len(inputs)} input file(s): {len(inputs) - failed} in {len(sets)} set(s)"
                      f" ({shared} share a set with other files), {failed} unusable; per file: "
                      "OUT/.flambient/summaries/latest.json", soft_wrap=True)
    for name, paths in unsure_sets(inputs).items():
        console.print(f"[yellow]warning:[/] set {name} joins {', '.join(paths)} on weak evidence "
                      "(see `flambient ingest --explain`)", soft_wrap=True)

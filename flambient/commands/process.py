"""``flambient process``: a shoot folder -> finished images, with presets, tiling and devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import (BackendChoice, devices_multi_option, force_option, jobs_option, json_option, model_option,
                       out_option, overlap_option, preset_option, tile_option)


def register(app: typer.Typer) -> None:
    """Add the ``process`` command to ``app``."""

    @command(app, "process")
    def process_cmd(
        shoot: Path = typer.Argument(..., help="Shoot folder (frames, or single merged images)."),
        preset: str = preset_option(),
        model: Optional[str] = model_option(None, "Model name, model folder or .onnx file (default: the preset's)."),
        backend: BackendChoice = typer.Option(BackendChoice.torch, "--backend", help="Model runtime."),
        devices: str = devices_multi_option(),
        out: Optional[Path] = out_option(None, "Output folder (default: SHOOT/final)."),
        force: bool = force_option("Redo sets whose final is up to date."),
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
        recursive: bool = typer.Option(False, "--recursive", "-r",
                                       help="Also read frames in sub-folders (kept for a shoot ingested so)."),
        no_cache: bool = typer.Option(False, "--no-cache",
                                      help="Decode originals even when ingest --cache frames exist."),
        jobs: int = jobs_option(help="Decoder threads per set (0 = all cores)."),
        json_out: Optional[str] = json_option("Also write the run's summary as JSON to PATH; '-' prints only the JSON, "
                                              "on stdout."),
    ) -> None:
        """Blend every bracket set of SHOOT into a final (skips sets already done).

        Exit 0 when all is done, 1 if any set failed, 4 if sets were left to another worker's lock.
        """
        import dataclasses

        from ..config import load_preset
        from ..errors import ConfigError
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
        opts = ProcessOptions(preset=p, model=model, backend=backend.value, devices=devices, out=out, force=force,
                              dry_run=dry_run, shard=shard_range,
                              use_cache=not no_cache, decode_jobs=jobs or None,
                              overwrite_user_files=overwrite_user_files, recursive=recursive)
        summary = _run_with_progress(shoot, opts)
        _report(summary, dry_run, json_out)
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)


def _run_with_progress(shoot: Path, opts):  # type: ignore[no-untyped-def]
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from ..log import console
    from ..process import process_shoot
    from ._out import show_progress

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  disable=not show_progress(), transient=False) as bar:
        task = bar.add_task("all sets", total=None)
        per_set: dict = {}

        def on_plan(n: int) -> None:
            bar.update(task, total=n)

        def on_tile(name: str, done: int, total: int) -> None:
            if name not in per_set:
                per_set[name] = bar.add_task(f"  {name} tiles", total=total)
            bar.update(per_set[name], completed=done, total=total)

        def on_ingest(stage: str, done: int, total: int) -> None:
            key = f"ingest: {stage}"
            if key not in per_set:
                per_set[key] = bar.add_task(key, total=total)
            bar.update(per_set[key], completed=done, total=total)
            if done >= total:
                bar.remove_task(per_set.pop(key))

        def on_item(res) -> None:  # type: ignore[no-untyped-def]
            bar.update(task, advance=1, description=f"all sets (last: {res.name} {res.status})")
            if res.name in per_set:
                bar.remove_task(per_set.pop(res.name))

        return process_shoot(shoot, opts, progress=on_item, on_plan=on_plan, on_tile=on_tile, on_ingest=on_ingest)


def _report(summary, dry_run: bool, json_out: str | None) -> None:  # type: ignore[no-untyped-def]
    """Failures on stderr; the per-set results and counts (data) on stdout; JSON when asked.

    ``failed:``, ``kept:`` and ``locked:`` lines and the run's problems go to stderr also with
    ``-q`` (what this run could not do).
    """
    from rich.table import Table

    from ..log import console
    from ..process import summary_doc
    from ._out import emit, json_to_stdout, quiet

    report_problems(summary)
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


def report_problems(summary) -> None:  # type: ignore[no-untyped-def]
    """What a run could not do, on stderr, each once and also with ``-q``: failed sets, sets
    kept (a user's file) or left to another worker's lock, and run-wide problems."""
    from rich.markup import escape

    from ..log import console

    for r in summary.results:
        if r.status == "failed":
            console.print(f"[bold red]failed:[/] {escape(r.name)}: {escape(r.error or '')}", soft_wrap=True)
    for r in summary.results:
        if r.status in ("locked", "kept"):
            console.print(f"[bold yellow]{r.status}:[/] {escape(r.name)}: {escape(r.note or '')}", soft_wrap=True)
    for p in summary.problems:
        console.print(f"[bold red]error:[/] {escape(p)}", soft_wrap=True)


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

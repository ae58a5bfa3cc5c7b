"""``flambient ingest``: a shoot folder -> bracket sets (manifest, cache); or pairs -> dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to ``app``."""

    @app.command("ingest")
    def ingest_cmd(
        shoot: Optional[Path] = typer.Argument(None, help="Shoot folder holding the RAW/JPEG frames."),
        cache: bool = typer.Option(False, "--cache", help="Also write each set's normalised frames as half-float EXR."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read frames in sub-folders."),
        allow_mixed_cameras: bool = typer.Option(
            False, "--allow-mixed-cameras", help="Keep frames of other cameras (in sets of their own)."),
        no_thumbnails: bool = typer.Option(
            False, "--no-thumbnails", help="Group by EXIF and time only, without comparing pictures."),
        max_gap: float = typer.Option(300.0, "--max-gap", help="Pause (s) that always starts a new set."),
        min_similarity: float = typer.Option(
            0.35, "--min-similarity", help="Picture similarity (0-1) below which a new set starts."),
        pairs: Optional[Path] = typer.Option(None, "--pairs", help="Build a dataset from this folder of sources and finals."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Dataset folder to write (with --pairs)."),
        jobs: int = typer.Option(0, "--jobs", "-j", help="Parallel decoders (0 = all cores)."),
        force: bool = typer.Option(False, "--force", help="With --pairs: replace a dataset already in --out."),
    ) -> None:
        """Group a shoot's frames into bracket sets (ambient/flash/window), or build a dataset from pairs."""
        from ..brackets import GroupingConfig
        from ..errors import InputError
        from ..log import console

        n_jobs = jobs or None
        if pairs is not None:
            if out is None:
                raise InputError("--pairs needs --out DATASET", hint="e.g. flambient ingest --pairs ./pairs --out ./dataset")
            from ..pairs import ingest_pairs

            res = ingest_pairs(pairs, out, n_jobs=n_jobs, force=force)
            console.print(f"{len(res.items)} pair(s) -> {res.dataset / 'dataset.yaml'}"
                          f" ({len(res.unmatched)} unmatched, {len(res.errors)} failed)")
            if res.errors:
                raise typer.Exit(1)
            return
        if shoot is None:
            raise InputError("missing SHOOT folder", hint="flambient ingest ./shoot  (or --pairs SRC --out DATASET)")
        from ..ingest import ingest_shoot

        cfg = GroupingConfig(max_gap_s=max_gap, min_similarity=min_similarity, use_thumbnails=not no_thumbnails,
                             mixed_cameras="split" if allow_mixed_cameras else "error")
        manifest = ingest_shoot(shoot, cache=cache, config=cfg, n_jobs=n_jobs, recursive=recursive)
        _print_summary(manifest)
        if manifest.errors:
            raise typer.Exit(1)


def _print_summary(manifest) -> None:  # type: ignore[no-untyped-def]
    import logging

    from rich.table import Table

    from ..log import console, get_logger

    if get_logger().getEffectiveLevel() > logging.INFO:  # -q: only warnings and errors
        return

    table = Table(title=f"{len(manifest.sets)} bracket set(s) in {manifest.shoot}")
    for col in ("set", "frames", "roles (EV)", "handheld"):
        table.add_column(col)
    for s in manifest.sets:
        roles = ", ".join(f"{f.role}{'*' if i == s.reference else ''} {f.ev:+.1f}" for i, f in enumerate(s.frames))
        table.add_row(s.name, str(len(s.frames)), roles, "yes" if s.handheld else "no")
    console.print(table)
    console.print(f"manifest: {manifest.path}" + (f"  ({len(manifest.errors)} file(s) failed)" if manifest.errors else ""))

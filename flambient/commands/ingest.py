"""``flambient ingest``: a shoot folder -> bracket sets (manifest, cache); or pairs -> dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import force_option, jobs_option, json_option, out_option


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to ``app``."""

    @command(app, "ingest")
    def ingest_cmd(
        shoot: Optional[Path] = typer.Argument(None, help="Shoot folder holding the RAW/JPEG frames."),
        cache: bool = typer.Option(False, "--cache", help="Also write each set's normalised frames as half-float EXR."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read frames in sub-folders."),
        allow_mixed_cameras: bool = typer.Option(
            False, "--allow-mixed-cameras", help="Keep frames of other cameras (in sets of their own)."),
        no_thumbnails: bool = typer.Option(
            False, "--no-thumbnails", help="Group by EXIF and time only, without comparing pictures."),
        max_gap: float = typer.Option(300.0, "--max-gap", min=0.0, help="Pause (s) that always starts a new set."),
        min_similarity: float = typer.Option(
            0.35, "--min-similarity", min=0.0, max=1.0, help="Picture similarity (0-1) below which a new set starts."),
        pairs: Optional[Path] = typer.Option(None, "--pairs", help="Build a dataset from this folder of sources and finals."),
        out: Optional[Path] = out_option(None, "Dataset folder to write (with --pairs)."),
        jobs: int = jobs_option(help="Parallel decoders (0 = all cores)."),
        json_out: Optional[str] = json_option(
            "Also write the result (the manifest's sets and errors) as JSON to PATH; '-' prints only the JSON."),
        explain: bool = typer.Option(False, "--explain",
                                     help="Print why each frame joined its set or started a new one (the cues)."),
        force: bool = force_option("With --pairs: replace a dataset already in --out."),
        max_side: int = typer.Option(
            0, "--max-side", min=0,
            help="With --pairs: write every item at a long edge of at most N px (0 = full size)."),
    ) -> None:
        """Group a shoot's frames into bracket sets (ambient/flash/window), or build a dataset from pairs."""
        from ..brackets import GroupingConfig
        from ..errors import InputError
        from ._out import quiet
        from ._progress import StageProgress

        n_jobs = jobs or None
        if pairs is not None:
            if out is None:
                raise InputError("--pairs needs --out DATASET", hint="e.g. flambient ingest --pairs ./pairs --out ./dataset")
            from ..pairs import ingest_pairs

            res = ingest_pairs(pairs, out, n_jobs=n_jobs, force=force, max_side=max_side)
            _print_pairs(res, json_out)
            if res.exit_code:
                raise typer.Exit(res.exit_code)
            return
        if shoot is None:
            raise InputError("missing SHOOT folder", hint="flambient ingest ./shoot  (or --pairs SRC --out DATASET)")
        from ..ingest import ingest_shoot

        cfg = GroupingConfig(max_gap_s=max_gap, min_similarity=min_similarity, use_thumbnails=not no_thumbnails,
                             mixed_cameras="split" if allow_mixed_cameras else "error")
        with StageProgress("ingest", quiet()) as progress:
            manifest = ingest_shoot(shoot, cache=cache, config=cfg, n_jobs=n_jobs, recursive=recursive,
                                    progress=progress)
        _print_summary(manifest, json_out)
        if explain:
            _print_explain(manifest)
        if manifest.exit_code:
            raise typer.Exit(manifest.exit_code)


def _print_summary(manifest, json_out: Optional[str]) -> None:  # type: ignore[no-untyped-def]
    """The sets as data on stdout (table or TSV, or JSON); the manifest's path on stderr."""
    from rich.table import Table

    from ..log import console
    from ._out import emit, json_to_stdout, quiet

    table = Table(title=f"{len(manifest.sets)} bracket set(s) in {manifest.shoot}")
    for col in ("set", "frames", "roles (EV)", "handheld"):
        table.add_column(col)
    for s in manifest.sets:
        roles = ", ".join(f"{f.role}{'*' if i == s.reference else ''} {f.ev:+.1f}" for i, f in enumerate(s.frames))
        table.add_row(s.name, str(len(s.frames)), roles, "yes" if s.handheld else "no")
    emit({"shoot": str(manifest.shoot), "manifest": str(manifest.path), **manifest.to_dict()}, table, json_out)
    if not quiet() and not json_to_stdout(json_out):
        console.print(f"manifest: {manifest.path}" + (f"  ({len(manifest.errors)} file(s) failed)"
                                                      if manifest.errors else ""), soft_wrap=True)


def _print_pairs(res, json_out: Optional[str]) -> None:  # type: ignore[no-untyped-def]
    """``ingest --pairs``: one result line on stdout (or JSON)."""
    from ._out import json_to_stdout, print_line, write_json

    doc = {"dataset": str(res.dataset), "items": len(res.items), "unmatched": [str(u) for u in res.unmatched],
           "errors": [str(e) for e in res.errors]}
    write_json(doc, json_out)
    if not json_to_stdout(json_out):
        print_line(f"{len(res.items)} pair(s) -> {res.dataset / 'dataset.yaml'}"
                   f" ({len(res.unmatched)} unmatched, {len(res.errors)} failed)")


def _print_explain(manifest) -> None:  # type: ignore[no-untyped-def]
    """One row per frame: its set, joined or new, the reason and the measured cues."""
    from rich.table import Table

    from ..log import console

    table = Table(title="grouping decisions (capture order per camera)")
    for col in ("file", "set", "decision", "pause s", "similarity", "inliers", "drift", "reason"):
        table.add_column(col)

    def cue(g: dict, key: str) -> str:  # type: ignore[type-arg]
        v = g.get(key)
        return "" if v is None else (f"{v:g}" if isinstance(v, (int, float)) else str(v))

    for g in manifest.grouping:
        decision = ("joined" if g["sure"] else "joined (unsure)") if g["joined"] else "new set"
        table.add_row(g["path"], str(g["set"]), decision, cue(g, "pause_s"), cue(g, "similarity"),
                      cue(g, "inliers"), cue(g, "drift"), g["reason"])
    console.print(table)
    cfg = manifest.config
    console.print(f"joins on features: >= {cfg.min_inliers} inliers and drift <= {cfg.max_drift:g}; "
                  f"sure similarity {cfg.sure_similarity:g}, minimum {cfg.min_similarity:g}; "
                  f"pause limit {cfg.max_gap_s:g} s", soft_wrap=True)

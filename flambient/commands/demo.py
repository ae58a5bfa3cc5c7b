"""``flambient demo``: a synthetic shoot (when the folder has none) processed on shipped defaults."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""

    @app.command("demo")
    def demo_cmd(
        folder: Path = typer.Argument(Path("flambient-demo"),
                                      help="Shoot folder (a small synthetic one is made if empty)."),
        sets: int = typer.Option(3, "--sets", help="Bracket sets to synthesise when the folder holds no shoot."),
        preset: str = typer.Option("studio", "--preset", "-p", help="Preset to process with."),
    ) -> None:
        """Make a small synthetic DNG shoot (if FOLDER has no images) and process it with --preset studio."""
        from ..config import load_preset
        from ..io.images import IMAGE_EXTENSIONS
        from ..process import ProcessOptions, process_shoot
        from ._out import note

        p = load_preset(preset)
        has_images = folder.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir()
                                             if f.is_file() and not f.name.startswith("."))
        if not has_images:
            from ..synth import synth_shoot

            note(f"making a synthetic shoot of {sets} bracket sets in {folder} ...")
            synth_shoot(folder, sets=sets, size=(1536, 1024), seed=0, fmt="dng", style="studio")
        summary = process_shoot(folder, ProcessOptions(preset=p, devices="auto"))
        for r in summary.results:
            line = (f"{r.status:>8}  {r.name}" + (f"  -> {r.final}" if r.final else "")
                    + (f"  ({r.error})" if r.error else ""))
            note(line)
        note(f"finals are in [bold]{summary.out}[/] (summary: {summary.out / 'flambient-summary.json'})")
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)

"""``flambient presets``: list the available presets with a one-line description."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``presets`` command to ``app``."""

    @app.command("presets")
    def presets_cmd() -> None:
        """List presets (presets/*.yaml, $FLAMBIENT_PRESETS) with their description and output."""
        from rich.table import Table

        from ..config import list_presets
        from ..log import console

        table = Table(title="presets (use with: flambient process SHOOT --preset NAME)")
        for col in ("preset", "output", "description", "file"):
            table.add_column(col)
        for p in list_presets():
            o = p.output
            fmt = f"JPEG q{o.quality}" if o.format == "jpeg" else "16-bit TIFF"
            size = f", {o.long_edge} px" if o.long_edge else ""
            table.add_row(p.name, fmt + size, p.description, str(p.path))
        console.print(table)

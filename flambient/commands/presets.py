"""``flambient presets``: list the available presets with a one-line description (data on stdout)."""

from __future__ import annotations

from typing import Optional

import typer

from ._command import command
from ._options import json_option


def register(app: typer.Typer) -> None:
    """Add the ``presets`` command to ``app``."""

    @command(app, "presets")
    def presets_cmd(
        json_out: Optional[str] = json_option(),
    ) -> None:
        """List presets ($FLAMBIENT_PRESETS, the user folder, the shipped ones) with description and output."""
        from rich.table import Table

        from ..config import list_presets
        from ._out import emit

        presets = list_presets()
        table = Table(title="presets (use with: flambient process SHOOT --preset NAME)")
        for col in ("preset", "output", "description", "file"):
            table.add_column(col)
        for p in presets:
            o = p.output
            fmt = f"JPEG q{o.quality}" if o.format == "jpeg" else "16-bit TIFF"
            size = f", {o.long_edge} px" if o.long_edge else ""
            table.add_row(p.name, fmt + size, p.description, str(p.path))
        doc = {"presets": [{**p.to_dict(), "description": p.description, "file": str(p.path)} for p in presets]}
        emit(doc, table, json_out)

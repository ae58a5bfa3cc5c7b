"""``flambient models``: list model families and the available models (data on stdout)."""

from __future__ import annotations

from typing import Optional

import typer

from ._command import command
from ._options import json_option


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""

    @command(app, "models")
    def models_cmd(
        json_out: Optional[str] = json_option(),
    ) -> None:
        """List model families with their specs, and the models found by name (user folder, shipped)."""
        from rich.table import Table

        from ..nets.registry import available_models, families
        from ._out import emit, json_to_stdout, print_table

        specs = families()
        models = available_models()
        doc = {"families": [spec.to_dict() for spec in specs.values()],
               "models": [{"name": name, "path": str(path)} for name, path in models.items()]}
        table = Table(title="model families")
        for col in ("family", "tiles", "overlap", "size multiple", "context", "fp16", "onnx", "description"):
            table.add_column(col)
        for name, spec in specs.items():
            table.add_row(name, "yes" if spec.tileable else "no", str(spec.overlap), str(spec.size_multiple),
                          f"{spec.context_size}px", "yes" if spec.half_precision else "no",
                          "yes" if spec.exportable else "no", spec.description)
        emit(doc, table, json_out)
        if not json_to_stdout(json_out):
            named = Table(title="models by name (use with: flambient process --model NAME)")
            named.add_column("model")
            named.add_column("folder")
            for name, path in models.items():
                named.add_row(name, str(path))
            print_table(named)

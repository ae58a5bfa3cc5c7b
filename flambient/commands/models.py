"""``flambient models``: list model families and shipped models."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""

    @app.command("models")
    def models_cmd() -> None:
        """List model families with their specs, and the shipped models."""
        from rich.table import Table

        from ..log import console
        from ..nets.registry import families, model_search_paths

        table = Table(title="model families")
        for col in ("family", "tiles", "overlap", "size multiple", "context", "fp16", "onnx", "description"):
            table.add_column(col)
        for name, spec in families().items():
            table.add_row(name, "yes" if spec.tileable else "no", str(spec.overlap), str(spec.size_multiple),
                          f"{spec.context_size}px", "yes" if spec.half_precision else "no",
                          "yes" if spec.exportable else "no", spec.description)
        console.print(table)
        seen: set[str] = set()
        for base in model_search_paths():
            if base.is_dir():
                for d in sorted(base.iterdir()):
                    if (d / "model.pt").is_file() and d.name not in seen:
                        seen.add(d.name)
                        console.print(f"shipped model [bold]{d.name}[/]: {d}")

"""``flambient export``: write a model as ONNX (and TensorRT), parity-checked against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import out_option


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @command(app, "export")
    def export_cmd(
        model: str = typer.Argument("default", help="Shipped model name, model folder or model.pt."),
        out: Optional[Path] = out_option(None, "Where to write the ONNX model (default: model.onnx beside "
                                         "model.pt; the context graph goes beside it as *.context.onnx)."),
        fp16: bool = typer.Option(False, "--fp16", help="Convert to float16 (parity tolerance 1e-2)."),
        trt: bool = typer.Option(False, "--trt", help="Also build a TensorRT engine (NVIDIA GPU + TensorRT)."),
        opset: int = typer.Option(17, "--opset", min=13, max=20, help="ONNX opset (13-20)."),
    ) -> None:
        """Export MODEL to ONNX with dynamic tile size; check it against torch before writing it."""
        from rich.table import Table

        from ..export import export_model
        from ._out import note, print_table

        res = export_model(model, out, fp16=fp16, trt=trt, opset=opset)
        table = Table(title=f"parity of {res.family} ({'fp16' if res.fp16 else 'fp32'}, opset {res.opset}, "
                            f"onnxruntime {res.parity.provider})")
        for col in ("batch", "tile (h x w)", "max abs error", "mean abs error"):
            table.add_column(col, justify="right")
        for c in res.parity.cases:
            table.add_row(str(c.batch), f"{c.height} x {c.width}", f"{c.max_abs:.2e}", f"{c.mean_abs:.2e}")
        print_table(table)
        note(f"parity ok: max abs error {res.parity.max_abs:.2e}, mean {res.parity.mean_abs:.2e} "
             f"(tolerance {res.parity.tolerance:g}; context max {res.parity.context_max_abs:.2e})")
        note(f"wrote {res.onnx_path} and {res.context_path.name} in {res.seconds:.1f} s")
        for f in res.trt_files:
            note(f"TensorRT ({res.trt_method}): {f}")

"""``flambient eval``: metrics of predictions against reference edits, baselines, HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import json_option, model_option, out_option


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @command(app, "eval")
    def eval_cmd(
        pred: Path = typer.Argument(..., help="Folder of predicted finals (matched to TRUTH by file stem)."),
        truth: Path = typer.Argument(..., help="Folder of reference edits."),
        inputs: Optional[Path] = typer.Option(
            None, "--inputs", "-i", help="Shoot or dataset folder the predictions were made from (input "
            "thumbnails, window masks, baselines)."),
        baselines: bool = typer.Option(
            False, "--baselines", help="Also score ambient-only, luminosity blend and Mertens fusion (needs --inputs)."),
        json_path: Optional[str] = json_option("Write metrics.json to PATH; '-' prints only the JSON, on stdout."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write the self-contained report.html here."),
        out: Optional[Path] = out_option(None, "Folder for metrics.json and report.html (when --json / --report "
                                         "do not name them)."),
        model: Optional[str] = model_option(None, "Name of the model that made PRED, for the report and metrics.json "
                                            "(default: read from the finals' sidecars)."),
        preset: Optional[str] = typer.Option(
            None, "--preset", "-p", help="Name of the preset PRED was made with (default: from the sidecars)."),
    ) -> None:
        """Score predictions against reference edits: PSNR, SSIM, MS-SSIM, CIEDE2000, WB, tone, exposure, FLIP."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from ..evaluate import evaluate, summary_table
        from ..log import console
        from ._out import emit, quiet, show_progress

        if out is not None:
            json_path = json_path or str(out / "metrics.json")
            report = report or out / "report.html"
        with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      console=console, transient=True, disable=not show_progress()) as bar:
            task = bar.add_task("", total=None)

            def progress(done: int, total: int, name: str) -> None:
                bar.update(task, completed=done, total=total, description=name)

            result = evaluate(pred, truth, inputs=inputs, with_baselines=baselines, keep_views=report is not None,
                              progress=progress, model=model, preset=preset)
        for msg in result.missing:
            console.print(f"[yellow]missing:[/] {msg}", soft_wrap=True)
        written = emit(result.to_json(), summary_table(result), json_path)
        if written is not None and not quiet():
            console.print(f"metrics: {written}")
        if report is not None:
            from ..report import write_report

            path = write_report(result, report)
            if not quiet():
                console.print(f"report: {path}")
        if result.exit_code:
            raise typer.Exit(result.exit_code)

"""``flambient eval``: metrics of predictions against reference edits, baselines, HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_cmd(
        pred: Path = typer.Argument(..., help="Folder of predicted finals (matched to TRUTH by file stem)."),
        truth: Path = typer.Argument(..., help="Folder of reference edits."),
        inputs: Optional[Path] = typer.Option(
            None, "--inputs", "-i", help="Shoot or dataset folder the predictions were made from (input "
            "thumbnails, window masks, baselines)."),
        baselines: bool = typer.Option(
            False, "--baselines", help="Also score ambient-only, luminosity blend and Mertens fusion (needs --inputs)."),
        json_path: Optional[str] = typer.Option(
            None, "--json", metavar="PATH", help="Write metrics.json here; '-' prints only the JSON, on stdout."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write the self-contained report.html here."),
        model: Optional[str] = typer.Option(
            None, "--model", help="Name of the model that made PRED, for the report and metrics.json "
            "(default: read from the finals' sidecars)."),
        preset: Optional[str] = typer.Option(
            None, "--preset", help="Name of the preset PRED was made with (default: from the sidecars)."),
    ) -> None:
        """Score predictions against reference edits: PSNR, SSIM, MS-SSIM, CIEDE2000, WB, tone, exposure, FLIP."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from ..evaluate import evaluate, summary_table
        from ..log import console
        from ._out import emit, quiet

        with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      console=console, transient=True, disable=quiet()) as bar:
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
        if result.failed or result.missing:
            raise typer.Exit(1)

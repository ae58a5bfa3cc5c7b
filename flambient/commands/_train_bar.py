"""The progress bar of ``train`` and ``finetune``: drawn here, fed by the library's callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..training.loop import ProgressFn, TrainProgress
from ._out import show_progress


@contextmanager
def train_bar(label: str) -> Iterator[ProgressFn | None]:
    """A rich bar on stderr for :func:`flambient.training.fit`'s reports; None under ``-q`` or off a terminal.

    Use as ``with train_bar("train") as progress: fit(..., progress=progress)``. The bar shows
    the run's progress (steps or time, whichever budget ends it), the step and the last logged loss.
    """
    if not show_progress():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..log import console

    with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TextColumn("step {task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(label, total=1000, step=0, loss="-")

        def report(p: TrainProgress) -> None:
            fields: dict[str, object] = {"step": p.step}
            if p.loss is not None:
                fields["loss"] = f"{p.loss:.4f}"
            bar.update(task, completed=1000 * p.fraction, **fields)

        yield report

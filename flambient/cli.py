"""The ``flambient`` command line: a thin Typer layer over the library.

Every command lives in :mod:`flambient.commands` and registers itself. Exit status: 0 when
everything worked, 1 when a batch finished with failed items, 2 for errors a user can fix
(bad arguments, missing or corrupt input, bad YAML, unknown model, and OS errors such as a
full disk or a read-only folder, printed with their path), 3 for an internal error, 4 when
``process`` left sets to another worker's lock; tracebacks only with -v.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Optional

import typer

from . import __version__
from .errors import FlambientError
from .log import console, setup_logging, verbosity

#: Order of commands in ``flambient --help`` (others follow alphabetically).
COMMAND_ORDER = ["ingest", "synth", "train", "finetune", "process", "eval", "export", "models", "presets"]

app = typer.Typer(
    name="flambient",
    help="Blend real-estate flash/ambient bracket sets into finished images, the way your editor does.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"flambient {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; -v also shows tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors (for cron)."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """Blend real-estate flash/ambient bracket sets into finished images."""
    setup_logging(verbose=verbose, quiet=quiet)


def _register_commands() -> None:
    from . import commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER), n))
    for name in names:
        importlib.import_module(f"{commands.__name__}.{name}").register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int) and rv:  # click returns typer.Exit's code when not standalone
            return rv
    except FlambientError as exc:
        if verbosity():
            console.print_exception()
        console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:  # click's own exits
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except OSError as exc:  # disk full, read-only, permissions, a vanished file: one line with the path
        from rich.markup import escape

        from .errors import describe_os_error

        if verbosity():
            console.print_exception()
        console.print(f"[bold red]error:[/] {escape(describe_os_error(exc))}", markup=True, highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        return 130
    except Exception as exc:  # click usage errors and unexpected failures
        # Typer vendors click; duck-type its usage errors instead of importing it.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            _usage_error(exc)
            return int(getattr(exc, "exit_code", 2) or 2)
        if type(exc).__name__ == "Abort":
            return 130
        if verbosity():
            console.print_exception()
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (run with -v for the traceback)",
                      soft_wrap=True)
        return 3
    return 0


def _usage_error(exc: Exception) -> None:
    """A click usage error as one line on stderr, with where to look for help."""
    fmt = getattr(exc, "format_message", None)
    msg = " ".join((fmt() if callable(fmt) else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None and getattr(ctx, "command_path", None) else "flambient"
    console.print(f"[bold red]error:[/] {msg} (see: {where} --help)", markup=True, highlight=False, soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

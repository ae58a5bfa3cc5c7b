"""The command class every ``flambient`` command uses: ``-q``/``-v`` after the command name,
and old option spellings kept as hidden, deprecated aliases.

- ``flambient process SHOOT -q`` works like ``flambient -q process SHOOT``: every command takes
  ``--quiet/-q`` and ``--verbose/-v`` itself (the root's and the command's are combined).
- Options renamed for the common vocabulary (README, "Option vocabulary") keep their old
  spelling for scripts: :data:`DEPRECATED` maps, per command, the old spelling to the new one.
  The old spelling is rewritten before the arguments are parsed (so values are checked by the
  new option's rules and recorded under its name), is absent from ``--help``, and prints one
  ``deprecated`` warning once the arguments parsed (a usage error stays one line).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand

from ..log import get_logger, is_quiet, setup_logging, verbosity

log = get_logger("cli")

#: Old spelling -> new spelling, per command. A short flag's old meaning is kept only where
#: the new vocabulary gives it no other meaning in that command.
DEPRECATED: dict[str, dict[str, str]] = {
    "train": {"--model": "--family", "-m": "--family", "--device": "--devices"},
    "finetune": {"--base": "--model", "--device": "--devices", "-p": "--pairs"},
    "synth": {"--workers": "--jobs"},
    "export": {"--onnx": "--out"},
}

_META_KEY = "flambient.deprecated"


def _common_params() -> list[Any]:
    """``--quiet/-q`` and ``--verbose/-v`` as Typer options (built once by Typer itself)."""
    dummy = typer.Typer(add_completion=False)

    @dummy.command()
    def _common(
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors (for cron)."),
        verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; -v also shows tracebacks."),
    ) -> None:  # pragma: no cover - never called
        """Options every command takes."""

    return list(typer.main.get_command(dummy).params)


COMMON_PARAMS = _common_params()
COMMON_NAMES = frozenset(p.name for p in COMMON_PARAMS)


def rewrite_deprecated(command: str, args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Replace ``command``'s deprecated spellings in ``args``; returns the new args and (old, new) pairs.

    Handles ``OLD VALUE``, ``OLD=VALUE`` and an attached short value (``-mbilateral``);
    nothing after ``--`` is touched.
    """
    table = DEPRECATED.get(command, {})
    out: list[str] = []
    used: list[tuple[str, str]] = []
    rest = False
    for arg in args:
        if rest or arg == "--":
            rest = True
            out.append(arg)
            continue
        new = _rewrite_one(arg, table)
        if new != arg:
            old = next(o for o in table if arg == o or arg.startswith(o + "=") or
                       (not o.startswith("--") and arg.startswith(o)))
            used.append((old, table[old]))
        out.append(new)
    return out, used


def _rewrite_one(arg: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if arg == old:
            return new
        if old.startswith("--") and arg.startswith(old + "="):
            return new + arg[len(old):]
        if not old.startswith("--") and arg.startswith(old) and len(arg) > len(old):
            return f"{new}={arg[len(old):].lstrip('=')}"
    return arg


class FlambientCommand(TyperCommand):
    """A Typer command with the common ``-q``/``-v`` options and the deprecated-alias rewrite."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(COMMON_PARAMS)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args, used = rewrite_deprecated(self.name or "", list(args))
        ctx.meta[_META_KEY] = used
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        quiet = bool(ctx.params.pop("quiet", False))
        verbose = int(ctx.params.pop("verbose", 0) or 0)
        if quiet or verbose:
            setup_logging(verbose=verbosity() + verbose, quiet=is_quiet() or quiet)
        for old, new in ctx.meta.get(_META_KEY, []):
            log.warning("%s %s is deprecated; use %s", self.name, old, new)
        return super().invoke(ctx)


def command(app: typer.Typer, name: str, **kwargs: Any) -> Any:
    """``app.command(name)`` with :class:`FlambientCommand`; use it for every command."""
    return app.command(name, cls=FlambientCommand, **kwargs)

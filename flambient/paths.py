"""Where models (``models/<name>/``) and presets (``presets/*.yaml``) are looked for: one rule for both.

Search order, first match wins:

1. the folders in the resource's environment variable (``$FLAMBIENT_MODELS``,
   ``$FLAMBIENT_PRESETS``; several separated by ``os.pathsep``);
2. the user folder's ``models/`` or ``presets/`` (:func:`user_dir`: ``$FLAMBIENT_HOME``, else
   ``$XDG_DATA_HOME/flambient``, else ``~/.local/share/flambient``), for a studio's own
   models and presets;
3. the shipped ones: inside an installed wheel they are package data under
   ``flambient/_shipped/`` (copied there by ``setup.py`` at build time, found through
   :mod:`importlib.resources`); in a checkout or an editable install they are the
   repository's top-level ``models/`` and ``presets/``.

The current working folder is never searched, so a name means the same model wherever a
command runs (give a path, ``./models/mine``, to use a folder there).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: The folder holding the ``flambient`` package: the repository root in a checkout or an
#: editable install, ``site-packages`` in a wheel install (see :func:`shipped_dir`).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Environment variable naming the user folder (overrides ``$XDG_DATA_HOME/flambient``).
HOME_ENV = "FLAMBIENT_HOME"
#: Sub-folder of the package where a wheel carries the shipped resources.
SHIPPED_PACKAGE_DIR = "_shipped"
#: Resource folders that are shipped.
RESOURCES = ("models", "presets")


def user_dir() -> Path:
    """The per-user folder (holding ``models/`` and ``presets/``); it need not exist."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "flambient"


def shipped_dir(name: str) -> Path | None:
    """The folder of shipped resources ``name`` (``"models"`` or ``"presets"``), or None.

    A wheel's package data (``flambient/_shipped/<name>``) first; else, when the package sits
    in a source checkout (a ``pyproject.toml`` beside it), the checkout's ``<name>/``.
    """
    try:
        cand = resources.files(__package__ or "flambient") / SHIPPED_PACKAGE_DIR / name
        if isinstance(cand, Path) and cand.is_dir():
            return cand
    except (ModuleNotFoundError, TypeError, OSError):  # pragma: no cover - exotic importers
        pass
    src = REPO_ROOT / name
    if (REPO_ROOT / "pyproject.toml").is_file() and src.is_dir():
        return src
    return None


def search_dirs(env_var: str, name: str) -> list[Path]:
    """Folders searched for resources called ``name`` (``"models"``, ``"presets"``), first wins.

    See the module docstring for the order; folders that do not exist are kept in the list
    (callers skip them), so error messages can say where was looked.
    """
    dirs: list[Path] = []
    env = os.environ.get(env_var)
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs.append(user_dir() / name)
    shipped = shipped_dir(name)
    if shipped is not None:
        dirs.append(shipped)
    return dirs

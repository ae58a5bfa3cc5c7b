"""Where shipped resources (models/, presets/) are looked for: one rule for all of them."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or source tree) root: the folder holding ``flambient/``, ``models/``, ``presets/``.
REPO_ROOT = Path(__file__).resolve().parents[1]


def search_dirs(env_var: str, name: str) -> list[Path]:
    """Folders searched for resources called ``name`` (``"models"``, ``"presets"``), first wins.

    Order: the folders in ``$env_var`` (separated by ``os.pathsep``), the source tree's
    ``<name>/`` (an editable install or a checkout), then ``./<name>`` in the working directory.
    """
    dirs: list[Path] = []
    env = os.environ.get(env_var)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(REPO_ROOT / name)
    dirs.append(Path.cwd() / name)
    return dirs

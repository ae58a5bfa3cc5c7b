"""Build hook: ship the top-level ``models/`` and ``presets/`` inside the wheel.

Everything else about the package is in ``pyproject.toml``. At build time (``pip wheel .``,
``python -m build``) every file of ``models/<name>/`` and every ``presets/*.yaml`` is copied
into ``flambient/_shipped/`` of the build, where :mod:`flambient.paths` finds them through
:mod:`importlib.resources`. An editable install (``pip install -e .``) copies nothing: the
package then reads the checkout's folders directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def shipped_files(root: Path = ROOT) -> list[Path]:
    """Files to ship, relative to ``root``: all of ``models/*/`` (no hidden files, no caches) and presets."""
    out: list[Path] = []
    models = root / "models"
    if models.is_dir():
        for f in sorted(models.rglob("*")):
            rel = f.relative_to(root)
            if f.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                out.append(rel)
    presets = root / "presets"
    if presets.is_dir():
        out += [f.relative_to(root) for f in sorted(presets.iterdir())
                if f.is_file() and f.suffix in (".yaml", ".yml") and not f.name.startswith(".")]
    return out


class BuildPyWithShipped(build_py):
    """``build_py`` that also copies :func:`shipped_files` to ``<build>/flambient/_shipped/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest_root = Path(self.build_lib) / "flambient" / "_shipped"
        if dest_root.exists():  # a reused build folder must not ship files removed since
            shutil.rmtree(dest_root)
        for rel in shipped_files():
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest)


setup(cmdclass={"build_py": BuildPyWithShipped})

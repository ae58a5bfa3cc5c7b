"""Where models and presets come from (issue 13): user folder first, shipped ones in the wheel,
never the current folder."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flambient import paths
from flambient.config import available_presets, load_preset
from flambient.nets.registry import available_models, resolve_model_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("FLAMBIENT_MODELS", "FLAMBIENT_PRESETS", "FLAMBIENT_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_user_folder_location(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.user_dir() == clean_env / "home" / ".local" / "share" / "flambient"
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    assert paths.user_dir() == clean_env / "xdg" / "flambient"
    monkeypatch.setenv("FLAMBIENT_HOME", str(clean_env / "fh"))
    assert paths.user_dir() == clean_env / "fh"


def test_user_folder_is_searched_before_the_shipped_ones(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = clean_env / "fh"
    monkeypatch.setenv("FLAMBIENT_HOME", str(home))
    (home / "presets").mkdir(parents=True)
    (home / "presets" / "studio.yaml").write_text("description: my own studio\n")
    (home / "presets" / "mine.yaml").write_text("description: mine\n")
    assert load_preset("studio").description == "my own studio"
    assert available_presets()["mine"] == home / "presets" / "mine.yaml"
    shipped = REPO / "models" / "default"
    (home / "models" / "default").mkdir(parents=True)
    shutil.copy(shipped / "model.pt", home / "models" / "default" / "model.pt")
    assert resolve_model_path("default") == home / "models" / "default" / "model.pt"
    # $FLAMBIENT_MODELS still comes first.
    env = clean_env / "env-models"
    (env / "default").mkdir(parents=True)
    shutil.copy(shipped / "model.pt", env / "default" / "model.pt")
    monkeypatch.setenv("FLAMBIENT_MODELS", str(env))
    assert resolve_model_path("default") == env / "default" / "model.pt"


def test_names_never_depend_on_the_current_folder(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = clean_env / "work"
    (cwd / "models" / "stray").mkdir(parents=True)
    shutil.copy(REPO / "models" / "default" / "model.pt", cwd / "models" / "stray" / "model.pt")
    (cwd / "presets").mkdir()
    (cwd / "presets" / "stray.yaml").write_text("description: stray\n")
    monkeypatch.chdir(cwd)
    assert "stray" not in available_models() and "stray" not in available_presets()
    assert "default" in available_models() and "studio" in available_presets()


def test_setup_ships_every_file_of_a_model_folder(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("flambient_setup_under_test", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    # Load only the helper (running setup() needs build arguments): exec the module with setup stubbed.
    import setuptools

    real = setuptools.setup
    setuptools.setup = lambda **kw: None  # type: ignore[assignment]
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        setuptools.setup = real  # type: ignore[assignment]
    root = tmp_path / "checkout"
    (root / "models" / "m1" / "sub").mkdir(parents=True)
    for name in ("model.pt", "model.yaml", "extra.json", "sub/more.bin", ".hidden"):
        (root / "models" / "m1" / name).write_text("x")
    (root / "presets").mkdir()
    (root / "presets" / "a.yaml").write_text("{}")
    (root / "presets" / "notes.txt").write_text("no")
    got = {str(p) for p in mod.shipped_files(root)}
    assert got == {"models/m1/model.pt", "models/m1/model.yaml", "models/m1/extra.json", "models/m1/sub/more.bin",
                   "presets/a.yaml"}


@pytest.mark.slow
def test_wheel_carries_presets_and_models(tmp_path: Path) -> None:
    """The built wheel holds every shipped model file and preset under flambient/_shipped/."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # build from a copy, so the checkout gets no build/ folder
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".pytest_cache", "runs", "out"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("flambient-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in sorted((REPO / "models").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and not f.name.startswith("."):
            assert f"flambient/_shipped/{f.relative_to(REPO).as_posix()}" in names
    for f in sorted((REPO / "presets").glob("*.yaml")):
        assert f"flambient/_shipped/presets/{f.name}" in names

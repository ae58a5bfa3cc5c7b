"""Shared test fixtures: the real files in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLAMBIENT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_file(*parts: str) -> Path:
    """Path of one file in ../shared/data; skips the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test file not found: {p}")
    return p


# ----------------------------------------------------------------------------- process fixtures


def make_tiny_shoot(factory: pytest.TempPathFactory, name: str, sets: int, seed: int, fmt: str,
                    size: tuple[int, int] = (192, 128)) -> Path:
    """A tiny synthetic shoot (``sets`` bracket sets of ``size`` = (width, height) frames, ``fmt``
    "dng" or "jpg"), without its ground truth; made once per calling fixture."""
    import shutil

    from flambient.synth import synth_shoot

    out = factory.mktemp(name)
    synth_shoot(out, sets=sets, size=size, seed=seed, fmt=fmt)
    shutil.rmtree(out / "truth")
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained (perturbed) bilateral model saved to a tmp folder (tests only, never shipped)."""
    import torch

    from flambient.nets.registry import create_model, save_model

    torch.manual_seed(0)
    net = create_model("bilateral")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    d = tmp_path_factory.mktemp("model") / "bil"
    save_model(net, d)
    return d


@pytest.fixture
def shoot(shoot_src: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's ``shoot_src`` fixture (each test may change it)."""
    import shutil

    dst = tmp_path / "shoot"
    shutil.copytree(shoot_src, dst)
    return dst


def latest_summary(out: Path) -> dict:  # type: ignore[type-arg]
    """The newest run summary of an output folder (``OUT/.flambient/summaries/latest.json``)."""
    import json

    return json.loads((out / ".flambient" / "summaries" / "latest.json").read_text())


def sidecar_file(final: Path) -> Path:
    """Where a final's sidecar lives (``OUT/.flambient/sidecars/<final>.json``)."""
    return final.parent / ".flambient" / "sidecars" / (final.name + ".json")


def process_cmd(shoot: Path, model: Path) -> list[str]:
    """``python -m flambient -q process SHOOT`` on the CPU with one decoder (a real subprocess)."""
    import sys

    return [sys.executable, "-m", "flambient", "-q", "process", str(shoot), "--model", str(model),
            "--devices", "cpu", "--jobs", "1"]

"""Shared test fixtures: the real files in ../shared/data (skipped cleanly when absent), and the
tiny generated model inputs every model test uses (:func:`make_stack`, :func:`perturbed`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from flambient.nets.registry import FlambientNet, create_model
from flambient.stack import HAS_FLASH, HAS_MASK, HAS_WINDOW, MASK, STACK_CHANNELS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLAMBIENT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def synth_finals(tmp_path: Path) -> Path:
    """``tmp_path/finals``: the two 192 x 128 JPEG finals of a seeded synthetic ``studio`` shoot
    (edited finals for ``synth --from`` to re-light)."""
    from flambient.synth import synth_shoot

    synth_shoot(tmp_path / "src", sets=2, size=(192, 128), seed=4, fmt="jpg", style="studio")
    finals = tmp_path / "finals"
    finals.mkdir()
    for p in (tmp_path / "src" / "truth").glob("*.jpg"):
        (finals / p.name).write_bytes(p.read_bytes())
    return finals


def load_benchmark(name: str) -> Any:
    """The module ``benchmarks/<name>.py`` (benchmarks are scripts, not a package), registered
    in ``sys.modules`` under ``name`` (its dataclasses look their module up there)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def shared_file(*parts: str) -> Path:
    """Path of one file in ../shared/data; skips the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test file not found: {p}")
    return p


def make_stack(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """N x 13 x h x w linear stack: smooth scene + noise; item 0 has flash+window, item 1 ambient only."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    base = 0.05 + 0.3 * (0.5 + 0.5 * torch.sin(6 * xx + 3 * yy + torch.rand(n, 3, 1, 1, generator=g) * 6))
    amb = base * (0.5 + torch.rand(n, 3, h, w, generator=g) * 0.5)
    x = torch.zeros(n, STACK_CHANNELS, h, w)
    x[:, 0:3] = amb
    x[0, 3:6] = amb[0] * 2.0 + 0.05
    x[0, 6:9] = amb[0] * 0.3
    x[0, MASK] = (xx[0, 0] > 0.7).float().expand(h, w)
    x[0, HAS_FLASH] = 1.0
    x[0, HAS_WINDOW] = 1.0
    x[0, HAS_MASK] = 1.0
    x[:, 0:3, : h // 6, : w // 6] *= 12.0  # a blown window above 1
    # the window-pull frame records its view: daylight-coloured, textured, 4-8x the ambient's white
    view = 4.0 + 4.0 * torch.rand(1, h // 6, w // 6, generator=g)
    x[0, 6:9, : h // 6, : w // 6] = view * torch.tensor([0.9, 1.0, 1.1]).view(3, 1, 1)
    return x


def perturbed(family: str, seed: int = 0, scale: float = 0.05) -> FlambientNet:
    """A net of ``family`` whose parameters are moved off their (often zero) initial values."""
    torch.manual_seed(seed)
    net = create_model(family)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * scale)
    return net.eval()


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
    from flambient.nets.registry import save_model

    d = tmp_path_factory.mktemp("model") / "bil"
    save_model(perturbed("bilateral", seed=0, scale=0.02), d)
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

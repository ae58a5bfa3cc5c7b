"""Shared fixture of the eval and report tests: tiny PRED / TRUTH folders and their dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from flambient import colour
from flambient.dataset import write_index, write_item
from flambient.io.images import write_png

H, W = 48, 64


def _scene(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A tiny flambient set: albedo lit by warm dim ambient, neutral flash, bright window."""
    albedo = np.clip(gaussian_filter(rng.uniform(0.05, 0.9, (H, W, 3)), (3, 3, 0)), 0.02, 0.95)
    albedo[:, : W // 3] = albedo[:, : W // 3].mean(axis=-1, keepdims=True)  # neutral wall
    mask = np.zeros((H, W), np.float32)
    mask[6:20, 40:58] = 1.0
    ambient = albedo * np.array([0.25, 0.18, 0.1]) + mask[..., None] * 3.0
    flash = albedo * 0.8 + mask[..., None] * 3.0
    window = ambient / 4.0 * 4.0  # exposure-normalised pull: same radiance, highlights kept
    truth_lin = albedo * 0.6 + mask[..., None] * np.array([0.5, 0.6, 0.8])
    return {
        "ambient": ambient.astype(np.float32), "flash": flash.astype(np.float32),
        "window": window.astype(np.float32), "mask": mask,
        "truth": colour.linear_to_srgb(truth_lin.astype(np.float32)),
    }


@pytest.fixture()
def eval_dirs(tmp_path: Path) -> dict[str, Path]:
    """PRED and TRUTH folders plus a dataset of inputs; one extra prediction without truth,
    one prediction 2 px narrower than its truth."""
    rng = np.random.default_rng(0)
    pred_dir, truth_dir, ds = tmp_path / "pred", tmp_path / "truth", tmp_path / "dataset"
    pred_dir.mkdir()
    truth_dir.mkdir()
    entries = []
    for i in range(3):
        sc = _scene(rng)
        name = f"set{i:02d}"
        entries.append(write_item(ds, name, sc["ambient"], sc["truth"], flash=sc["flash"], window=sc["window"],
                                  mask=sc["mask"]))
        pred = np.clip(sc["truth"] + rng.normal(0, 0.02, sc["truth"].shape), 0, 1).astype(np.float32)
        if i == 1:
            pred = pred[:, 1:-1]
        write_png(truth_dir / f"{name}.png", sc["truth"], bits=16)
        write_png(pred_dir / f"{name}.png", pred, bits=16)
    write_index(ds, entries)
    write_png(pred_dir / "orphan.png", np.zeros((H, W, 3), np.float32))
    return {"pred": pred_dir, "truth": truth_dir, "dataset": ds}


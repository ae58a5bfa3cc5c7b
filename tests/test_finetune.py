"""End-to-end test of `flambient finetune` on tiny generated pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flambient.cli import main
from flambient.colour import linear_to_srgb
from flambient.errors import InputError
from flambient.finetune import finetune, finetune_config
from flambient.io.images import write_png
from flambient.nets.registry import load_model
from flambient.train import make_config, train_dataset

from test_train_helpers import make_dataset

TINY = {"width": 8, "hidden": 8, "grid_size": 4, "luma_bins": 4}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base")
    ds = make_dataset(root / "ds", n=4, h=32, w=32, seed=1, w_flash=0.7)
    cfg = make_config(None, steps=1, batch=2, crop=32, val_every=1, model_config=TINY, previews=0)
    train_dataset(ds, cfg, root / "model", command="flambient train base")
    return root / "model"


@pytest.mark.slow
def test_finetune_dataset_writes_card_with_before_and_after(base_model: Path, tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "warm", n=6, h=32, w=32, seed=2, w_flash=0.3, warm=0.15)
    cfg = finetune_config(None, steps=16, batch=3, crop=32, lr=5e-3, previews=0, val_every=8, patience=0,
                          ema_decay=0.5, warmup=0.0)
    res = finetune(ds, tmp_path / "ft", base=str(base_model), cfg=cfg, command="flambient finetune test")
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    before, after = card["validation"]["before"], card["validation"]["after"]
    assert before["delta_e2000"] == pytest.approx(res.before["delta_e2000"], rel=1e-4)
    assert after["delta_e2000"] <= before["delta_e2000"]
    assert res.kept == "fine-tuned" and after["delta_e2000"] < 0.9 * before["delta_e2000"]
    assert card["commands"] == ["flambient train base", "flambient finetune test"]
    assert card["data"]["validation_items"] and card["data"]["base_model"].endswith("model.pt")
    net, meta = load_model(tmp_path / "ft")
    assert meta["metrics"]["after"]["delta_e2000"] == pytest.approx(after["delta_e2000"], rel=1e-4)


@pytest.mark.slow
def test_finetune_cli_on_raw_pairs_folder_context_only(base_model: Path, tmp_path: Path) -> None:
    """A src/ + tgt/ pairs folder is ingested on the fly; --context-only leaves apply weights alone."""
    pairs = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for i in range(3):
        amb = rng.uniform(0.05, 0.5, size=(24, 32, 3)).astype(np.float32)
        write_png(pairs / "src" / f"room{i}.png", linear_to_srgb(amb), bits=16)
        write_png(pairs / "tgt" / f"room{i}.png", linear_to_srgb(np.clip(amb * 1.6, 0, 1)), bits=16)
    rc = main(["finetune", "--pairs", str(pairs), "--base", str(base_model), "--out", str(tmp_path / "ft"),
               "--steps", "2", "--context-only", "--seed", "1"])
    assert rc == 0
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert card["training"]["context_only"] is True
    assert set(card["validation"]) == {"before", "after"}
    base, _ = load_model(base_model)
    tuned, _ = load_model(tmp_path / "ft")
    for name in ("pw1.weight", "pw2.weight", "guide_scale"):
        assert (base.state_dict()[name] == tuned.state_dict()[name]).all()


def test_finetune_errors(base_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pairs folder not found"):
        finetune(tmp_path / "nope", tmp_path / "o", base=str(base_model))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        finetune(tmp_path / "empty", tmp_path / "o", base=str(base_model))

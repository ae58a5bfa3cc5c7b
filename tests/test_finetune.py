"""`flambient finetune`: few-shot (style only, cross-validated) and many-pairs regimes, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from flambient.cli import main
from flambient.colour import linear_to_srgb
from flambient.errors import InputError
from flambient.training.finetune import cross_validate, finetune, finetune_config, fit_style
from flambient.io.images import write_png
from flambient.nets.registry import create_model, load_model, save_model
from flambient.training import evaluate, load_val_pairs

from test_train_helpers import make_dataset

TINY = {"width": 8, "grid_size": 4, "luma_bins": 4, "curve_knots": 8}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny `adaptive` model (the family of the shipped default)."""
    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    save_model(create_model("adaptive", **TINY), root / "model", extra={"command": "flambient train base"})
    (root / "model" / "model.yaml").write_text(yaml.safe_dump({"commands": ["flambient train base"]}))
    return root / "model"


def _look_pairs(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` single-image pairs (src/ + tgt/) whose edit is one global look: +1 EV, warmer, more contrast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:56].astype(np.float32)
    for i in range(n):
        base = rng.uniform(0.03, 0.25, size=3).astype(np.float32)
        grad = (0.4 + 0.6 * np.sin(xx / 56 * rng.uniform(2, 6) + yy / 40 * rng.uniform(1, 4)) ** 2)[:, :, None]
        amb = (base * grad).astype(np.float32)
        edit = np.clip(amb * 2.0 * np.array([1.12, 1.0, 0.85], np.float32), 0, 1) ** 1.15
        write_png(folder / "src" / f"room{i}.png", linear_to_srgb(amb), bits=16)
        write_png(folder / "tgt" / f"room{i}.png", linear_to_srgb(edit), bits=16)
    return folder


@pytest.mark.slow
def test_few_shot_finetune_learns_a_look_and_reports_cross_validation(base_model: Path, tmp_path: Path) -> None:
    pairs = _look_pairs(tmp_path / "pairs", 6)
    cfg = finetune_config(None, style_steps=60, seed=1)
    lines: list[str] = []
    res = finetune(pairs, tmp_path / "ft", base=str(base_model), cfg=cfg, command="flambient finetune test",
                   progress=lines.append)
    assert res.regime == "few-shot" and res.kept == "fine-tuned"
    assert res.after["delta_e2000"] < 0.7 * res.before["delta_e2000"]
    assert len(lines) == 6 and len(res.per_pair) == 6  # 5 folds over 6 pairs, each pair held out once
    assert lines[-1].startswith("cross-validation keeps")
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert card["validation"]["before"]["delta_e2000"] == pytest.approx(res.before["delta_e2000"], rel=1e-4)
    assert card["training"]["trained"] == "style parameters"
    assert card["training"]["style_share_kept"] >= 0.75  # one consistent look: (nearly) all of the fit is kept
    assert "5-fold cross-validation" in card["data"]["estimate"]
    assert sorted(card["data"]["validation_items"]) == [f"room{i}" for i in range(6)]
    assert card["commands"] == ["flambient train base", "flambient finetune test"]
    base, _ = load_model(base_model)
    tuned, meta = load_model(tmp_path / "ft")
    assert meta["regime"] == "few-shot"
    from flambient.nets.adaptive import AMBIENT_STYLE, SINGLE_STYLE, WINDOW_STYLE

    style = {"curve_theta", "log2_key", "ev_strength", "wb_strength", "wb_bias", "flash_weight", "saturation", "matrix",
             *SINGLE_STYLE, *WINDOW_STYLE, *AMBIENT_STYLE}
    moved = {name for name, value in base.state_dict().items() if not torch.equal(value, tuned.state_dict()[name])}
    assert moved and moved <= style  # only the global style moved


@pytest.mark.slow
def test_finetune_on_three_pairs_improves_its_training_pairs(base_model: Path, tmp_path: Path) -> None:
    pairs = _look_pairs(tmp_path / "pairs", 3, seed=4)
    (tmp_path / "ft.yaml").write_text("style_steps: 100\n")
    rc = main(["finetune", "--pairs", str(pairs), "--base", str(base_model), "--out", str(tmp_path / "ft"), "--seed", "1",
               "--config", str(tmp_path / "ft.yaml")])
    assert rc == 0
    from flambient.training.finetune import _dataset_from
    from flambient.dataset import load_dataset

    items = load_dataset(_dataset_from(pairs, tmp_path / "ds"))
    val = load_val_pairs(items, 256)
    before = evaluate(load_model(base_model)[0], val, torch.device("cpu"))[0]["delta_e2000"]
    after = evaluate(load_model(tmp_path / "ft")[0], val, torch.device("cpu"))[0]["delta_e2000"]
    assert after < 0.6 * before
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert card["data"]["estimate"].startswith("leave-one-out over 3 pairs")


def test_cross_validation_leaves_the_net_unchanged(base_model: Path, tmp_path: Path) -> None:
    from flambient.training.finetune import _dataset_from
    from flambient.dataset import load_dataset

    pairs = _look_pairs(tmp_path / "pairs", 4, seed=2)
    val = load_val_pairs(load_dataset(_dataset_from(pairs, tmp_path / "ds")), 64)
    net, _ = load_model(base_model)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    recs = cross_validate(net, val, steps=5, reg=0.05, device=torch.device("cpu"))
    assert sorted(r["name"] for r in recs) == [f"room{i}" for i in range(4)]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    fit_style(net, val, steps=5, reg=0.05, device=torch.device("cpu"))
    assert not torch.equal(state["curve_theta"], net.state_dict()["curve_theta"])
    assert torch.equal(state["features.0.0.weight"], net.state_dict()["features.0.0.weight"])


@pytest.mark.slow
def test_many_pairs_regime_trains_with_a_held_out_split(base_model: Path, tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "warm", n=12, h=32, w=32, seed=2, w_flash=0.3, warm=0.15)
    cfg = finetune_config(None, few_pairs=10, steps=6, batch=2, crop=32, previews=0, val_every=3, warmup=0.0)
    res = finetune(ds, tmp_path / "ft", base=str(base_model), cfg=cfg, command="flambient finetune many")
    assert res.regime == "many pairs"
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert len(card["data"]["validation_items"]) == 8  # at least 8 held out, never 1 or 2
    assert set(card["validation"]) == {"before", "after"}
    assert card["validation"]["after"]["delta_e2000"] <= card["validation"]["before"]["delta_e2000"]


def test_many_pairs_budget_grows_with_the_pairs_unless_one_is_given(base_model: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flambient.training import finetune as ft
    from flambient.training.config import make_config

    assert (finetune_config().steps, finetune_config().max_minutes) == (0, 0.0)   # the regime decides
    assert make_config(None).steps == 1000                                          # `train` keeps its default
    assert ft.many_pairs_budget(40) == (1000, 6.0)
    assert ft.many_pairs_budget(150) == (1200, 6.0)
    assert ft.many_pairs_budget(600) == (4800, 24.0)
    assert ft.many_pairs_budget(5000) == (6000, 25.0)
    asked: list[int] = []

    def tiny_budget(n: int) -> tuple[int, float]:
        asked.append(n)
        return 3, 0.0

    monkeypatch.setattr(ft, "many_pairs_budget", tiny_budget)
    seen_cfg: list[Any] = []
    real_fit = ft.fit

    def spy_fit(net: Any, train: Any, val: Any, cfg: Any, *a: Any, **k: Any) -> Any:
        seen_cfg.append(cfg)
        return real_fit(net, train, val, cfg, *a, **k)

    monkeypatch.setattr(ft, "fit", spy_fit)
    ds = make_dataset(tmp_path / "warm", n=12, h=32, w=32, seed=2, w_flash=0.3, warm=0.15)
    cfg = finetune_config(None, few_pairs=10, batch=2, crop=32, previews=0, val_every=3, warmup=0.0)
    res = finetune(ds, tmp_path / "ft", base=str(base_model), cfg=cfg, command="flambient finetune budget")
    assert asked == [12] and res.steps == 3
    assert seen_cfg and seen_cfg[-1].time_schedule is False  # its own budget: the steps set the schedule
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert card["training"]["steps"] == 3
    explicit = finetune_config(None, few_pairs=10, steps=2, batch=2, crop=32, previews=0, val_every=3, warmup=0.0)
    res = finetune(ds, tmp_path / "ft2", base=str(base_model), cfg=explicit, command="flambient finetune budget")
    assert asked == [12] and res.steps == 2                                         # --steps wins
    assert seen_cfg[-1].time_schedule is True                                       # and its schedule is the usual one


def test_finetune_errors(base_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pairs folder not found"):
        finetune(tmp_path / "nope", tmp_path / "o", base=str(base_model))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        finetune(tmp_path / "empty", tmp_path / "o", base=str(base_model))


def test_blend_style_moves_along_the_line_from_base_to_fit(base_model: Path) -> None:
    from flambient.training.finetune import blend_style, style_values

    net, _ = load_model(base_model)
    base = style_values(net)
    fitted = [b + torch.randn_like(b) for b in base]
    blend_style(net, base, fitted, 0.5)
    assert all(torch.allclose(p, (b + f) / 2) for p, b, f in zip(net.style_parameters(), base, fitted))
    blend_style(net, base, fitted, 0.0)
    assert all(torch.equal(p, b) for p, b in zip(net.style_parameters(), base))
    blend_style(net, base, fitted, 1.0)
    assert all(torch.allclose(p, f) for p, f in zip(net.style_parameters(), fitted))


def test_choose_share_keeps_the_base_unless_a_share_beats_it() -> None:
    from flambient.training.finetune import STYLE_SHARES, choose_share

    def rec(before: float, by_share: dict[float, float]) -> dict:
        return {"before": {"delta_e2000": before},
                "shares": {s: {"delta_e2000": by_share.get(s, 99.0)} for s in STYLE_SHARES}}

    worse = [rec(5.0, {0.25: 5.5, 0.5: 6.0, 0.75: 7.0, 1.0: 8.0}), rec(4.0, {0.25: 4.2, 0.5: 4.4, 0.75: 5.0, 1.0: 6.0})]
    assert choose_share(worse) == 0.0
    middle = [rec(5.0, {0.25: 4.0, 0.5: 3.0, 0.75: 3.5, 1.0: 4.5}), rec(6.0, {0.25: 5.0, 0.5: 4.0, 0.75: 4.0, 1.0: 5.0})]
    assert choose_share(middle) == 0.5
    tie = [rec(5.0, {0.25: 4.0, 0.5: 4.0, 0.75: 4.0, 1.0: 4.0})]
    assert choose_share(tie) == 0.25


@pytest.mark.slow
def test_few_shot_keeps_the_base_when_the_pairs_disagree(base_model: Path, tmp_path: Path) -> None:
    """Edits that contradict each other (two pairs brightened 1 stop, two darkened 1 stop, same
    kind of source) teach no style: cross-validation finds no share that helps held-out pairs
    and the written model is the base model."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:56].astype(np.float32)
    for i in range(4):
        amb = (rng.uniform(0.05, 0.2, size=3).astype(np.float32)
               * (0.5 + 0.5 * np.sin(xx / 9 + yy / 13 + i) ** 2)[:, :, None]).astype(np.float32)
        edit = np.clip(amb * (2.0 if i % 2 else 0.5), 0, 1)
        write_png(tmp_path / "pairs" / "src" / f"room{i}.png", linear_to_srgb(amb), bits=16)
        write_png(tmp_path / "pairs" / "tgt" / f"room{i}.png", linear_to_srgb(edit), bits=16)
    res = finetune(tmp_path / "pairs", tmp_path / "ft", base=str(base_model),
                   cfg=finetune_config(None, style_steps=60, seed=1), command="flambient finetune mixed")
    card = yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text())
    assert card["training"]["style_share_kept"] == 0.0 and res.kept.startswith("base")
    assert res.after["delta_e2000"] == res.before["delta_e2000"]
    base, _ = load_model(base_model)
    tuned, _ = load_model(tmp_path / "ft")
    assert all(torch.equal(v, tuned.state_dict()[k]) for k, v in base.state_dict().items())
    assert tuned.config == base.config  # the darkening pairs widened no bound of the kept base


def test_a_pairs_folder_is_built_at_the_largest_size_the_finetune_reads(tmp_path: Path) -> None:
    from flambient.dataset import load_dataset
    from flambient.io.images import write_jpeg
    from flambient.training.finetune import _dataset_from, build_side

    assert build_side(finetune_config()) == 384
    assert build_side(finetune_config(max_side=640)) == 640
    assert build_side(finetune_config(max_side=0)) == 0            # 0 = no downscaling anywhere: full size
    src = tmp_path / "pairs"
    src.mkdir()
    pic = np.random.default_rng(0).uniform(0.1, 0.9, (600, 900, 3)).astype(np.float32)
    write_jpeg(src / "a_src.jpg", pic)
    write_jpeg(src / "a_edited.jpg", pic ** 0.8)
    (item,) = load_dataset(_dataset_from(src, tmp_path / "t", build_side(finetune_config())))
    stack, target = item.load()
    assert stack.shape[:2] == target.shape[:2] == (256, 384)
    (full,) = load_dataset(_dataset_from(src, tmp_path / "f", 0))
    assert full.load()[0].shape[:2] == (600, 900)

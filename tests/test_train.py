"""End-to-end tests of `flambient train` on tiny generated data: train, resume, config errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from flambient.cli import app, main
from flambient.data import Augment, PairStore, progressive_crop, sample_batch, split_items
from flambient.dataset import load_dataset
from flambient.errors import ConfigError, InputError
from flambient.losses import LossWeights, blend_loss, lab_distance, ssim, tone_distribution
from flambient.nets.registry import load_model
from flambient.training import lr_at, make_config, train_dataset

from test_train_helpers import make_dataset

TINY = {"width": 8, "hidden": 8, "grid_size": 4, "luma_bins": 4}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), n=6)


def _cfg(**kw):
    base = dict(batch=2, crop=32, val_every=2, model_config=TINY, previews=1, log_every=1, val_max_side=64)
    base.update(kw)
    return make_config(None, **base)


def test_split_is_fixed_and_disjoint(dataset: Path) -> None:
    items = load_dataset(dataset)
    tr, va = split_items(items, 0.34)
    tr2, va2 = split_items(list(reversed(items)), 0.34)
    assert {i.name for i in va} == {i.name for i in va2}
    assert len(va) == 2 and not ({i.name for i in tr} & {i.name for i in va})
    assert len(tr) + len(va) == len(items)


def test_paired_augmentation_keeps_alignment(dataset: Path) -> None:
    """Flips/crops/rotations move input and target together; colours are never changed."""
    store = PairStore(load_dataset(dataset))
    rng = np.random.default_rng(0)
    x, y = sample_batch(store, [0, 1, 2], 32, Augment(hflip=0.5, vflip=0.5, rotate_deg=0.0), rng)
    assert x.shape == (3, 13, 32, 32) and y.shape == (3, 3, 32, 32)
    # The helper's final is a per-pixel function of the inputs: recompute it from the crop.
    from test_train_helpers import style_final

    amb = x[:, 0:3].permute(0, 2, 3, 1).numpy()
    fl = x[:, 3:6].permute(0, 2, 3, 1).numpy()
    expect = np.stack([style_final(a, f, 0.7, 0.0) for a, f in zip(amb, fl)])
    # EXR half floats and 16-bit PNG quantisation leave ~1e-3 of difference.
    assert np.abs(expect - y.permute(0, 2, 3, 1).numpy()).max() < 0.01
    xr, yr = sample_batch(store, [0], 32, Augment(rotate_deg=3.0), np.random.default_rng(1))
    assert xr.shape == (1, 13, 32, 32) and torch.isfinite(xr).all()


def test_mask_dropout_removes_mask_and_flag(tmp_path: Path) -> None:
    from flambient.dataset import write_index, write_item

    amb = np.full((16, 16, 3), 0.2, np.float32)
    mask = np.zeros((16, 16), np.float32)
    mask[:, 8:] = 1.0
    write_index(tmp_path, [write_item(tmp_path, "w", amb, np.full((16, 16, 3), 0.5, np.float32), mask=mask)])
    store = PairStore(load_dataset(tmp_path))
    keep, _ = sample_batch(store, [0], 16, Augment(hflip=0.0, rotate_deg=0.0, mask_dropout=0.0), np.random.default_rng(0))
    drop, _ = sample_batch(store, [0], 16, Augment(hflip=0.0, rotate_deg=0.0, mask_dropout=1.0), np.random.default_rng(0))
    assert keep[0, 12].min() == 1.0 and keep[0, 9].max() > 0.99
    assert drop[0, 9].abs().max() == 0.0 and drop[0, 12].abs().max() == 0.0
    assert torch.equal(keep[0, :9], drop[0, :9])


def test_unedit_frame_is_a_flatter_darker_camera_rendering() -> None:
    """The single-image input made from a final: darker on average, never more saturated,
    exposure-free cast, and a neutral white stays (nearly) neutral."""
    from flambient import colour, sanity
    from flambient.data import UNEDIT_EV, unedit_frame

    rng = np.random.default_rng(3)
    target = np.clip(rng.random((32, 48, 3)).astype(np.float32) * [1.0, 0.8, 0.5], 0, 1)
    target[:8, :8] = 1.0  # a clipped white window
    evs, sats = [], []
    for _ in range(20):
        f = unedit_frame(target, rng)
        assert f.shape == target.shape and f.dtype == np.float32 and (f >= 0).all()
        s = colour.linear_to_srgb(np.clip(f, 0, 1))
        evs.append(sanity.exposure_change_ev(s, target))
        sats.append(float(np.median(sanity.chroma(s)[8:, 8:])) / float(np.median(sanity.chroma(target)[8:, 8:])))
        assert sanity.chroma(s)[:8, :8].max() < 8.0  # a white stays white up to a slight cast
    assert UNEDIT_EV[0] - 0.6 < min(evs) and max(evs) < UNEDIT_EV[1] + 0.6 and np.mean(evs) < 0
    assert max(sats) < 1.1 and min(sats) < 0.8


def test_unedit_samples_replace_bracket_frames_only(dataset: Path, tmp_path: Path) -> None:
    """frame_dropout + unedit turn a bracket sample into one camera-rendered frame; a one-frame
    pair (a real source photograph) keeps its own frame."""
    from flambient.dataset import write_index, write_item

    store = PairStore(load_dataset(dataset))
    aug = Augment(hflip=0.0, rotate_deg=0.0, mask_dropout=0.0, frame_dropout=1.0, unedit=1.0)
    x, y = sample_batch(store, [0], 1 << 30, aug, np.random.default_rng(0))
    amb0 = torch.from_numpy(store.get(0)[0][:, :, 0:3]).permute(2, 0, 1)
    assert x[0, 3:12].abs().max() == 0.0  # no flash / window frames, no flags
    assert not torch.allclose(x[0, 0:3], amb0, atol=1e-3)  # not the ambient frame
    amb = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32) * 0.5
    write_index(tmp_path, [write_item(tmp_path, "one", amb, np.full((16, 16, 3), 0.5, np.float32))])
    single = PairStore(load_dataset(tmp_path))
    xs, _ = sample_batch(single, [0], 16, aug, np.random.default_rng(0))
    ratio = xs[0, 0:3].permute(1, 2, 0).numpy() / single.get(0)[0][:, :, 0:3]
    assert np.allclose(ratio, ratio.mean(), rtol=1e-4)  # its own frame, at most re-exposed


def test_progressive_crop_and_schedule() -> None:
    assert [progressive_crop(256, p) for p in (0.0, 0.4, 0.9)] == [128, 192, 256]
    assert progressive_crop(256, 0.1, stages=1) == 256
    cfg = make_config(None, lr=1e-3, warmup=0.1, min_lr_ratio=0.0)
    assert lr_at(0.05, cfg) == pytest.approx(5e-4)
    assert lr_at(0.1, cfg) == pytest.approx(1e-3)
    assert lr_at(1.0, cfg) == pytest.approx(0.0, abs=1e-12)


def test_the_clock_sets_the_schedule_only_where_asked() -> None:
    """By default the schedule follows the larger of the step and the time fraction (either
    budget ends on a low rate); with ``time_schedule`` off it follows the steps alone, so a slow
    first step or a busy machine cannot change the rate, while the time still stops the run."""
    from flambient.training.step import run_progress, schedule_progress

    both = make_config(None, steps=1000, max_minutes=1.0)
    assert schedule_progress(10, 30.0, both) == run_progress(10, 30.0, both) == pytest.approx(0.5)
    steps_only = make_config(None, steps=1000, max_minutes=1.0, time_schedule=False)
    assert schedule_progress(10, 30.0, steps_only) == pytest.approx(0.01)
    assert run_progress(10, 60.0, steps_only) == pytest.approx(1.0)      # the cap still stops it
    time_only = make_config(None, steps=0, max_minutes=1.0, time_schedule=False)
    assert schedule_progress(10, 30.0, time_only) == pytest.approx(0.5)  # no steps: the clock is all there is


def test_losses_are_zero_for_identical_and_grow_with_colour_shift() -> None:
    y = torch.rand(2, 3, 24, 24)
    loss, parts = blend_loss(y.clone(), y)
    assert loss.item() == pytest.approx(0.0, abs=2e-3)
    assert ssim(y, y).item() == pytest.approx(1.0, abs=1e-5)
    shifted = (y * torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1)).clamp(0, 1)
    assert lab_distance(shifted, y).item() > 1.0
    p = y.clone().requires_grad_(True)
    blend_loss(p, (y + 0.05).clamp(0, 1))[0].backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_tone_distribution_asks_for_the_truths_spread_not_its_places() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 32, 32, generator=g).expand(2, 3, 32, 32).contiguous()   # grey images
    shuffled = y.flatten(2)[:, :, torch.randperm(32 * 32, generator=g)].view_as(y)
    assert tone_distribution(shuffled, y).item() == pytest.approx(0.0, abs=1e-3)   # places do not count
    assert lab_distance(shuffled, y).item() > 10.0                                   # the per-pixel term sees them
    # A grey, compressed copy (upper tones pulled toward the middle): the gradient on the
    # compression factor points toward the truth's spread (factor 1).
    a = torch.tensor(0.6, requires_grad=True)
    tone_distribution(0.5 + a * (y - 0.5), y).backward()
    assert a.grad.item() < 0
    w = LossWeights(tone=1.0)
    total, parts = blend_loss(0.5 + 0.6 * (y - 0.5), y, w)
    base, base_parts = blend_loss(0.5 + 0.6 * (y - 0.5), y)
    assert parts["tone"] > 0.05 and "tone" not in base_parts
    assert total.item() == pytest.approx(base.item() + parts["tone"], rel=1e-4)
    with pytest.raises(ConfigError, match="loss weights"):
        make_config(None, loss_tone=-1.0)


@pytest.mark.slow
def test_train_end_to_end_then_resume(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = train_dataset(dataset, _cfg(steps=4), out, command="flambient train test")
    assert res.steps == 4
    for name in ("model.pt", "model.yaml", "log.csv", "curves.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert list((out / "previews").glob("step_*.jpg"))
    net, meta = load_model(out)
    assert meta["steps"] == 4 and meta["train_config"]["model_config"] == TINY
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["family"] == "bilateral" and card["commands"] == ["flambient train test"]
    assert card["validation"]["delta_e2000"] > 0 and card["training"]["images_per_s"] > 0
    x = torch.rand(1, 13, 20, 30)
    assert net(x).shape == (1, 3, 20, 30)

    with pytest.raises(InputError, match="already holds a training run"):
        train_dataset(dataset, _cfg(steps=4), out)
    res2 = train_dataset(dataset, _cfg(steps=6), out, resume=True)
    assert res2.steps == 6
    with open(out / "log.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["loss"]]
    steps = [int(r["step"]) for r in rows]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued at 5, nothing redone or skipped
    assert load_model(out)[1]["steps"] == 6


def test_training_reduces_the_error(tmp_path: Path) -> None:
    """A few dozen steps on a tiny dataset must lower the validation dE2000 clearly."""
    ds = make_dataset(tmp_path / "ds", n=4, h=32, w=32, seed=3)
    cfg = make_config(None, steps=24, batch=3, crop=32, val_every=24, model_config=TINY, previews=0,
                      lr=5e-3, warmup=0.0, rotate_deg=0.0, progressive_stages=1, val_fraction=0.25, ema_decay=0.5)
    res = train_dataset(ds, cfg, tmp_path / "run", command="t")
    from flambient.training import evaluate, load_val_pairs
    from flambient.nets.registry import create_model

    torch.manual_seed(0)
    fresh = create_model("bilateral", **TINY)
    _, val = split_items(load_dataset(ds), 0.25)
    before, _ = evaluate(fresh, load_val_pairs(val, 64), torch.device("cpu"))
    assert res.metrics["delta_e2000"] < 0.7 * before["delta_e2000"]


def test_bad_config_errors_clearly(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.001\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match="learning_rate: unknown key"):
        make_config(bad)
    bad.write_text("batch: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        make_config(bad)
    bad.write_text("batch: eight\n")
    with pytest.raises(ConfigError, match="batch"):
        make_config(bad)
    bad.write_text("crop: 4\n")
    with pytest.raises(ConfigError, match="crop"):
        make_config(bad)
    bad.write_text("lr: 0.001\nlearning_rate: 3\n")
    capsys.readouterr()
    assert main(["train", str(dataset), "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "Traceback" not in err
    assert main(["train", str(dataset), "--out", str(tmp_path / "o2"), "--model", "nosuch", "--steps", "1"]) == 2
    assert "unknown model family" in capsys.readouterr().err


def test_cli_train_runs(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model_config": TINY, "val_every": 2, "previews": 0, "val_max_side": 48}))
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["train", str(dataset), "--model", "bilateral", "--config", str(cfg), "--out", str(out),
                                 "--steps", "2", "--batch", "2", "--crop", "32", "--seed", "3", "--device", "cpu",
                                 "--data-command", "flambient synth X --pairs"])
    assert r.exit_code == 0, r.output
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["commands"][0] == "flambient synth X --pairs"
    # Rebuilt from the parsed arguments, not sys.argv (which is the test runner's here).
    assert card["commands"][1].startswith(f"flambient train {dataset} --out {out}")
    assert "--steps 2" in card["commands"][1] and "--seed 3" in card["commands"][1]
    assert card["training"]["seed"] == 3


def test_cli_train_init_starts_from_a_trained_model(dataset: Path, tmp_path: Path) -> None:
    """`train --init MODEL`: the run starts from MODEL's weights and config (fresh optimiser),
    and its card carries MODEL's commands before its own; another family is refused."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model_config": TINY, "val_every": 2, "previews": 0, "val_max_side": 48}))
    first = tmp_path / "first"
    r = CliRunner().invoke(app, ["train", str(dataset), "--family", "bilateral", "--config", str(cfg), "--out", str(first),
                                 "--steps", "2", "--batch", "2", "--crop", "32", "--data-command", "flambient synth X --pairs"])
    assert r.exit_code == 0, r.output
    still = tmp_path / "still.yaml"
    still.write_text(yaml.safe_dump({"lr": 1e-12, "val_every": 1, "previews": 0, "val_max_side": 48}))
    second = tmp_path / "second"
    r = CliRunner().invoke(app, ["train", str(dataset), "--init", str(first), "--config", str(still), "--out", str(second),
                                 "--steps", "1", "--batch", "2", "--crop", "32"])
    assert r.exit_code == 0, r.output
    a, b = load_model(first)[0].state_dict(), load_model(second)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    card = yaml.safe_load((second / "model.yaml").read_text())
    assert card["commands"][0] == "flambient synth X --pairs" and card["commands"][1].startswith("flambient train")
    assert "--init" in card["commands"][2] and card["init"]["model"] == str(first) and card["init"]["steps"] == 2
    assert card["training"]["config"]["model_config"] == TINY
    assert main(["train", str(dataset), "--init", str(first), "--family", "lut", "--out", str(tmp_path / "x"),
                 "--steps", "1"]) == 2


def test_cli_train_init_overrides_model_config_and_starts_parts_the_file_predates_fresh(
        dataset: Path, tmp_path: Path) -> None:
    """`--init` from a model file saved before the window pull: the pull starts where a fresh
    model's does (the load hook's "off" zeros would never learn), and the config's model_config
    keys (here the bracket floor) override the init model's."""
    from flambient.nets.adaptive import WINDOW_STRENGTH_INIT

    small = {"width": 8, "grid_size": 4, "luma_bins": 4, "curve_knots": 8}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model_config": small, "val_every": 2, "previews": 0, "val_max_side": 48}))
    first = tmp_path / "first"
    r = CliRunner().invoke(app, ["train", str(dataset), "--family", "adaptive", "--config", str(cfg), "--out", str(first),
                                 "--steps", "1", "--batch", "2", "--crop", "32"])
    assert r.exit_code == 0, r.output
    payload = torch.load(first / "model.pt", weights_only=True)
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items()
                             if not k.startswith(("window_fc.", "window_key", "window_strength"))}
    torch.save(payload, first / "model.pt")
    old, meta = load_model(first)
    assert float(old.window_strength.detach()) == 0.0 and "window_strength" in meta["predates"]
    still = tmp_path / "still.yaml"
    still.write_text(yaml.safe_dump({"lr": 1e-12, "val_every": 1, "previews": 0, "val_max_side": 48,
                                     "model_config": {"bracket_ev_floor": -1.5}}))
    second = tmp_path / "second"
    r = CliRunner().invoke(app, ["train", str(dataset), "--init", str(first), "--config", str(still), "--out", str(second),
                                 "--steps", "1", "--batch", "2", "--crop", "32"])
    assert r.exit_code == 0, r.output
    new, new_meta = load_model(second)
    assert float(new.window_strength.detach()) == pytest.approx(WINDOW_STRENGTH_INIT, abs=1e-6)
    assert new.bracket_ev_floor == -1.5 and new.config["width"] == 8 and new_meta["predates"] == []
    a, b = old.state_dict(), new.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if k not in meta["predates"])

"""TrainState and its checkpoint, the batch and step pieces, and fit's progress callback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flambient.data import Augment, PairStore, split_items
from flambient.dataset import load_dataset
from flambient.errors import InputError
from flambient.nets.registry import create_model
from flambient.training import (TrainLoss, TrainProgress, TrainState, fit, make_batch, make_config,
                                train_step)
from flambient.training.device import Dist
from flambient.training.state import read_checkpoint, save_checkpoint
from flambient.losses import LossWeights

from test_train_helpers import make_dataset

TINY = {"width": 8, "hidden": 8, "grid_size": 4, "luma_bins": 4}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), n=4, h=32, w=40)


def _cfg(**kw):  # type: ignore[no-untyped-def]
    base = dict(steps=4, batch=2, crop=32, val_every=2, model_config=TINY, previews=0, val_max_side=40,
                device="cpu", seed=2)
    base.update(kw)
    return make_config(None, **base)


def _state(cfg) -> TrainState:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return TrainState.create(create_model("bilateral", **TINY), cfg, torch.device("cpu"))


def _stepped(dataset: Path, cfg, steps: int = 2) -> TrainState:  # type: ignore[no-untyped-def]
    state = _state(cfg)
    store = PairStore(load_dataset(dataset), cfg.max_side)
    loss = TrainLoss(state.net, LossWeights())
    for _ in range(steps):
        batch = make_batch(store, state, cfg, Augment(), Dist(), 1, True)
        train_step(loss, state, batch, cfg, use_amp=False)
        state.advance(batch.size, 0.01, steps_per_epoch=1)
    state.best, state.history = {"step": steps, "delta_e2000": 3.0}, [{"step": steps, "delta_e2000": 3.0}]
    return state


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_round_trip_restores_everything(dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg()
    state = _stepped(dataset, cfg)
    save_checkpoint(state, cfg, tmp_path / "ck.pt")
    back = TrainState.from_checkpoint(read_checkpoint(tmp_path / "ck.pt", torch.device("cpu")),
                                      create_model("bilateral", **TINY), cfg, torch.device("cpu"))
    assert _same_weights(back.net, state.net) and _same_weights(back.ema, state.ema)
    assert back.opt.state_dict()["state"].keys() == state.opt.state_dict()["state"].keys()
    for name in ("step", "epoch", "pos", "elapsed", "images", "bad_evals", "best", "history"):
        assert getattr(back, name) == getattr(state, name), name
    assert back.step == 2 and back.epoch == 2 and back.images == 4


def test_checkpoints_without_the_format_marker_still_load(dataset: Path) -> None:
    """The layout written before TrainState (the same keys, no ``format``) is read as version 0."""
    cfg = _cfg()
    state = _stepped(dataset, cfg)
    old = {"net": state.net.state_dict(), "ema": state.ema.state_dict(), "opt": state.opt.state_dict(),
           "step": 2, "epoch": 2, "pos": 0, "elapsed": 0.02, "images": 4, "best": state.best,
           "bad_evals": 0, "history": state.history, "config": cfg.to_dict()}
    back = TrainState.from_checkpoint(old, create_model("bilateral", **TINY), cfg, torch.device("cpu"))
    assert _same_weights(back.ema, state.ema) and back.step == 2 and back.best_state is None
    with pytest.raises(InputError, match="newer flambient"):
        TrainState.from_checkpoint({**old, "format": "flambient-train-state", "format_version": 99},
                                   create_model("bilateral", **TINY), cfg, torch.device("cpu"))
    with pytest.raises(InputError, match="not a flambient training checkpoint"):
        TrainState.from_checkpoint({**old, "format": "something-else"}, create_model("bilateral", **TINY), cfg,
                                   torch.device("cpu"))


def test_make_batch_depends_only_on_the_step_and_train_step_moves_the_weights(dataset: Path) -> None:
    cfg = _cfg()
    store = PairStore(load_dataset(dataset), cfg.max_side)
    a, b = _state(cfg), _state(cfg)
    ba = make_batch(store, a, cfg, Augment(hflip=0.5, rotate_deg=3.0), Dist(), 1, True)
    bb = make_batch(store, b, cfg, Augment(hflip=0.5, rotate_deg=3.0), Dist(), 1, True)
    assert torch.equal(ba.x, bb.x) and ba.box == bb.box and ba.size == 2
    b.step = 1
    assert ba.box != make_batch(store, b, cfg, Augment(), Dist(), 1, True).box or not torch.equal(
        ba.x, make_batch(store, b, cfg, Augment(), Dist(), 1, True).x)
    before = {k: v.clone() for k, v in a.net.state_dict().items()}
    loss = train_step(TrainLoss(a.net, LossWeights()), a, ba, cfg, use_amp=False)
    assert math.isfinite(loss) and a.step == 0  # counting is advance()'s job
    assert any(not torch.equal(before[k], v) for k, v in a.net.state_dict().items())
    assert a.advance(2, 0.5, steps_per_epoch=2) is False and a.advance(2, 0.5, steps_per_epoch=2) is True
    assert (a.step, a.epoch, a.pos, a.images, a.elapsed) == (2, 1, 0, 4, 1.0)


def test_fit_reports_progress_through_the_callback_only(dataset: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tr, va = split_items(load_dataset(dataset), 0.25)
    events: list[TrainProgress] = []
    torch.manual_seed(0)
    res = fit(create_model("bilateral", **TINY), tr, va, _cfg(), tmp_path / "run", progress=events.append)
    steps = [e.step for e in events if e.validation is None]
    assert steps == [1, 2, 3, 4] and events[-1].fraction == 1.0
    assert all(0.0 <= e.fraction <= 1.0 for e in events)
    vals = [e for e in events if e.validation is not None]
    assert [e.step for e in vals] == [2, 4] and vals[-1].validation == res.history[-1]
    assert all(e.loss is None or math.isfinite(e.loss) for e in events)
    import rich.progress

    bars: list[object] = []
    monkeypatch.setattr(rich.progress.Progress, "__init__", lambda self, *a, **k: bars.append(self))
    capfd.readouterr()
    fit(create_model("bilateral", **TINY), tr, va, _cfg(), tmp_path / "quiet")  # no callback: draws nothing
    assert capfd.readouterr().out == "" and not bars  # no progress display made by the library


def test_train_only_freezes_everything_it_does_not_name(dataset: Path) -> None:
    """`train_only`: only the named parameters change (the style ones at the style rate);
    an unknown name is a ConfigError that lists the model's parameters."""
    from flambient.errors import ConfigError
    from flambient.nets.adaptive import SINGLE_STYLE

    cfg = make_config(None, model="adaptive", steps=2, batch=2, crop=32, previews=0, device="cpu",
                      train_only=list(SINGLE_STYLE), style_lr_scale=10.0, frame_dropout=1.0)
    torch.manual_seed(0)
    net = create_model("adaptive")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = TrainState.create(net, cfg, torch.device("cpu"))
    assert [g["scale"] for g in state.opt.param_groups] == [10.0]
    store = PairStore(load_dataset(dataset))
    loss = TrainLoss(state.net, LossWeights())
    for _ in range(2):
        train_step(loss, state, make_batch(store, state, cfg, Augment(frame_dropout=1.0), Dist(), 1, True), cfg, False)
    after = state.net.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and changed <= set(SINGLE_STYLE)
    with pytest.raises(ConfigError, match="no parameter of this model: nosuch"):
        TrainState.create(create_model("adaptive"), make_config(None, model="adaptive", train_only=["nosuch"]),
                          torch.device("cpu"))


def test_hold_single_style_trains_brackets_and_keeps_singles(dataset: Path) -> None:
    """`hold_single_style`: the shared colour style trains on bracket sets while what single
    images use of it (shared + offset) stays put in the net and in its EMA, through every step;
    a stage that would train the CNN cannot hold them (ConfigError before any step)."""
    from flambient.errors import ConfigError

    cfg = make_config(None, model="adaptive", steps=3, batch=2, crop=32, previews=0, device="cpu",
                      train_only=["matrix", "saturation", "wb_strength", "ambient_wb"], hold_single_style=True,
                      style_lr_scale=10.0, frame_dropout=0.0)
    torch.manual_seed(0)
    net = create_model("adaptive")
    with torch.no_grad():
        net.single_matrix.normal_(0.0, 0.5)
        net.single_saturation.fill_(0.3)
    pins = {k: v.clone() for k, v in net.single_effective({"matrix"}).items()}
    matrix0 = net.matrix.detach().clone()
    state = TrainState.create(net, cfg, torch.device("cpu"))
    store = PairStore(load_dataset(dataset))
    loss = TrainLoss(state.net, LossWeights())
    for _ in range(3):
        train_step(loss, state, make_batch(store, state, cfg, Augment(frame_dropout=0.0), Dist(), 1, True), cfg, False)
        for m in (state.net, state.ema):
            for shared, held in m.single_effective({"matrix"}).items():
                assert torch.allclose(held, pins[shared], atol=1e-6), shared
    assert not torch.equal(state.net.matrix, matrix0)
    bad = make_config(None, model="adaptive", train_only=["matrix", "global_fc"], hold_single_style=True)
    with pytest.raises(ConfigError, match="hold_single_style"):
        TrainState.create(create_model("adaptive"), bad, torch.device("cpu"))
    with pytest.raises(ConfigError, match="bilateral family"):
        TrainState.create(create_model("bilateral"), make_config(None, model="bilateral", hold_single_style=True),
                          torch.device("cpu"))


def test_the_training_bracket_floor_is_used_while_training_and_not_saved(dataset: Path, tmp_path: Path) -> None:
    """`train_bracket_ev_floor`: the net trains under that floor, the saved model keeps its
    configured one; a family without a bracket floor refuses it before any step."""
    from flambient.errors import ConfigError
    from flambient.nets.registry import load_model, save_model

    tr, va = split_items(load_dataset(dataset), 0.25)
    cfg = make_config(None, model="adaptive", model_config={"bracket_ev_floor": -0.5, "width": 8}, steps=2, batch=2,
                      crop=32, val_every=2, previews=0, val_max_side=40, device="cpu", seed=2,
                      train_only=["curve_theta", "log2_key"], train_bracket_ev_floor=-2.0)
    net = create_model("adaptive", **cfg.model_config)
    res = fit(net, tr, va, cfg, tmp_path / "run")
    assert net.bracket_ev_floor == -2.0 and res.net.bracket_ev_floor == -2.0    # what the steps ran under
    saved, _ = load_model(save_model(res.net, tmp_path / "model"))
    assert saved.bracket_ev_floor == -0.5 and saved.config["bracket_ev_floor"] == -0.5
    with pytest.raises(ConfigError, match="no bracket exposure floor"):
        fit(create_model("bilateral", **TINY), tr, va, _cfg(train_bracket_ev_floor=-1.0), tmp_path / "b")

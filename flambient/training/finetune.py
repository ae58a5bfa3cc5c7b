"""``flambient finetune``: adapt a trained model to a studio's own pairs, from 3 to 600+.

Two regimes, chosen from the number of pairs ``n`` (``few_pairs``, default 40):

- **few-shot** (``n < few_pairs``): only the model's *style* parameters move
  (:meth:`FlambientNet.style_parameters`: for the default ``adaptive`` family 81 global
  numbers: tone curve, exposure key, white-balance strength and bias, saturation, colour
  matrix, flash weight, their single-image offsets, the window pull, the ambient white
  balance), on whole images, every
  pair in every step, with an L2 pull toward the base model's values (``style_reg / n``) and
  a step budget that grows with ``n``. No early stopping on one or two validation images:
  cross-validation (leave-one-out up to 5 pairs, 5 folds above: each fold fitted on the other
  pairs and scored before and after) *chooses* how much of the fitted change to keep (a share
  of :data:`STYLE_SHARES`, or none: the base) and reports it; the model that is written is
  fitted on every pair, that share of its change kept.
- **many pairs** (``n >= few_pairs``): 10 % (at least 8) of the pairs are held out to report
  and to stop early, and the whole image-adaptive model trains with a low learning rate
  (:func:`flambient.training.fit`), the style included, for a budget from ``n``
  (:func:`many_pairs_budget`).

In both regimes the base model is kept when fine-tuning does not beat it on the held-out
estimate, and the card says so. Metrics are dE2000 (CIELAB D65) and PSNR on sRGB in [0, 1].
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..log import get_logger
from .config import TrainConfig, make_config
from .device import pick_device
from .loop import ProgressFn, fit
from .step import cosine_decay
from .validation import evaluate, load_val_pairs

log = get_logger("finetune")

#: Fine-tuning defaults (any of them can be overridden by a config file or an option).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "warmup": 0.02,
    "min_lr_ratio": 0.1,
    "patience": 6,
    "keep_best": True,
    "val_fraction": 0.1,
    "max_side": 384,
    "val_max_side": 384,
    "batch": 4,
    "crop": 128,
    "progressive_stages": 1,
    "ema_decay": 0.95,
    "rotate_deg": 2.0,
    "style_lr_scale": 10.0,
}
#: Long edge (px) of the pairs the few-shot regime loads (context input and evaluation).
STYLE_SIDE = 256
#: Side (px) of the squares the few-shot loss is computed on (a global style needs colours, not detail).
STYLE_FIT_SIDE = 64
#: Folds of the few-shot estimate: leave-one-out up to this many pairs, this many folds above.
MAX_FOLDS = 5
#: Shares of a few-shot fit's change to the style (``base + share * (fit - base)``) that
#: cross-validation chooses from (1.0, the whole fit, is the one it reports per fold); the base
#: model itself (share 0) is always a candidate.
STYLE_SHARES = (0.25, 0.5, 0.75, 1.0)
#: Fewest held-out pairs in the many-pairs regime.
MIN_HOLDOUT = 8

Pair = tuple[str, np.ndarray, np.ndarray]
Progress = Callable[[str], None]


@dataclass
class FinetuneResult:
    """Metrics before and after (on held-out pairs or by leave-one-out), and what was kept."""

    before: dict[str, float]
    after: dict[str, float]
    kept: str
    steps: int
    seconds: float
    model_path: Path
    regime: str = "few-shot"
    per_pair: list[dict[str, Any]] = field(default_factory=list)


def finetune_config(config: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the fine-tuning defaults, then the YAML file, then overrides.

    Unless ``steps`` or ``max_minutes`` is given, both stay 0: the regime sets its own budget
    from the number of pairs (:func:`style_steps_for`, :func:`many_pairs_budget`)."""
    return make_config(config, base=FINETUNE_DEFAULTS, default_steps=0, **overrides)


def build_side(cfg: TrainConfig) -> int:
    """Long edge (px) of the temporary dataset a fine-tune builds from a pairs folder: the
    largest size any of its steps reads (``max_side``, ``val_max_side``, :data:`STYLE_SIDE`);
    0 (full size) when either of the first two is 0, which means no downscaling."""
    if cfg.max_side <= 0 or cfg.val_max_side <= 0:
        return 0
    return int(max(cfg.max_side, cfg.val_max_side, STYLE_SIDE))


def _dataset_from(pairs: Path, tmp: Path, max_side: int = 0) -> Path:
    """``pairs`` itself when it is a dataset folder, else a dataset built from it in ``tmp``
    (every image at a long edge of at most ``max_side`` px; 0: full size)."""
    if (pairs / "dataset.yaml").is_file():
        return pairs
    if not pairs.is_dir():
        raise InputError("pairs folder not found", pairs)
    from ..pairs import ingest_pairs

    res = ingest_pairs(pairs, tmp / "dataset", max_side=max_side)
    if not res.items:
        raise InputError("no usable pairs found", pairs,
                         "see `flambient ingest --help` for the layouts read (src/ + tgt/, NAME_src/NAME_tgt, set folders)")
    return res.dataset


def many_pairs_budget(n: int) -> tuple[int, float]:
    """Budget of a many-pairs fine-tune on ``n`` pairs: (optimiser steps, minutes).

    8 steps per pair, 1000 to 6000 (batch 4: about 35 passes over the training pairs once
    ``n`` >= 125), and a time cap of ``n`` / 25 minutes, 6 to 25, whichever ends first; early
    stopping on the held-out pairs usually ends the run before either. The regime trains with
    ``time_schedule`` off: the learning rate and crop follow the steps alone, so a busy or slow
    machine trains the same model as an idle one up to where the cap stops it (the issue allows
    30 minutes for 600 pairs). The cap is set above what 2 idle CPU cores need for the steps
    (about 4.5 minutes per 1000 steps at 384 px), so there the steps decide.
    """
    return int(min(6000, max(1000, 8 * n))), float(min(25.0, max(6.0, n / 25.0)))


def style_steps_for(n: int) -> int:
    """Optimiser steps of a few-shot fit on ``n`` pairs: 150 + 10 per pair, at most 400."""
    return int(min(400, 150 + 10 * n))


def style_batch(net: torch.nn.Module, pairs: Sequence[Pair], side: int, device: torch.device
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Pairs -> (context features, inputs N x 13 x side x side, targets N x 3 x side x side).

    Every pair is area-resized to a ``side`` square (a global style does not depend on the
    layout of the pixels, so all pairs fit one batch). The context features (None for
    families without any) come from each pair's full context input, as at inference; the
    context's own image statistics are then taken from the ``side`` squares (means of the
    same pixels, cheap enough to recompute every step).
    """
    from ..nets.registry import downsample

    feats, xs, ys = [], [], []
    for _, s, t in pairs:
        x = torch.from_numpy(np.ascontiguousarray(s)).permute(2, 0, 1)[None].to(device)
        y = torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            feats.append(net.context_features(downsample(x, net.spec.context_size)))
        xs.append(F.interpolate(x, size=(side, side), mode="area"))
        ys.append(F.interpolate(y, size=(side, side), mode="area"))
    f = None if any(v is None for v in feats) else torch.cat(feats)
    return f, torch.cat(xs), torch.cat(ys)


def fit_style(net: torch.nn.Module, pairs: Sequence[Pair], steps: int, reg: float, device: torch.device,
              lr: float | None = None, side: int = STYLE_FIT_SIDE) -> None:
    """Fit ``net.style_parameters()`` in place on whole-image pairs (every pair in every step).

    ``pairs`` hold (name, H x W x 13 linear stack, H x W x 3 sRGB target). Loss: L1 plus the
    CIELAB distance (:func:`flambient.losses.blend_loss` without its structural term: a global
    style moves colours, not structure) on :func:`style_batch` squares, plus ``reg / len(pairs)``
    times the squared distance of the style to its starting values. Adam with a cosine-decayed
    rate (``lr``, default the family's ``spec.style_lr``); every other parameter stays frozen,
    so the context features are computed once.
    """
    from ..losses import LossWeights, blend_loss
    from ..nets.registry import full_pos

    style = list(net.style_parameters())
    frozen = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    for p in style:
        p.requires_grad_(True)
    anchor = [p.detach().clone() for p in style]
    feats, x, y = style_batch(net, pairs, side, device)
    pos = full_pos(x)
    weights = LossWeights(l1=1.0, ssim=0.0, lab=1.0, chroma_weight=1.0)
    lr = net.spec.style_lr if lr is None else lr
    opt = torch.optim.Adam(style, lr=lr)
    lam = reg / max(1, len(pairs))
    was_training = net.training
    net.train()
    try:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr * cosine_decay(step / max(1, steps), 0.05)
            opt.zero_grad(set_to_none=True)
            ctx = net.context_from(x, feats) if feats is not None else net.context_of(x)
            loss = blend_loss(net.apply(x, ctx, pos), y, weights)[0]
            loss = loss + lam * sum(((p - a) ** 2).sum() for p, a in zip(style, anchor))
            loss.backward()
            opt.step()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        net.train(was_training)


def _per_pair(net: torch.nn.Module, pairs: Sequence[Pair], device: torch.device) -> list[dict[str, float]]:
    return [evaluate(net, [p], device)[0] for p in pairs]


def style_values(net: torch.nn.Module) -> list[torch.Tensor]:
    """Detached copies of ``net.style_parameters()``, in their order."""
    return [p.detach().clone() for p in net.style_parameters()]


def blend_style(net: torch.nn.Module, base: Sequence[torch.Tensor], fitted: Sequence[torch.Tensor], share: float) -> None:
    """Set the style in place to ``base + share * (fitted - base)`` (share 0: the base, 1: the fit).

    A shrinkage toward the base model: the style's parameters (logits, log gains, curve
    logits) move along the straight line from the base's values to the fit's.
    """
    with torch.no_grad():
        for p, b, f in zip(net.style_parameters(), base, fitted):
            p.copy_(b + float(share) * (f - b))


def choose_share(records: Sequence[dict[str, Any]]) -> float:
    """The share of the fitted change with the lowest mean held-out dE2000 over ``records``
    (from :func:`cross_validate`); 0.0 when no share beats the base model (``before``).
    Ties go to the smaller share (closer to the base)."""
    best, best_de = 0.0, float(np.mean([r["before"]["delta_e2000"] for r in records]))
    for share in STYLE_SHARES:
        de = float(np.mean([r["shares"][share]["delta_e2000"] for r in records]))
        if de < best_de - 1e-9:
            best, best_de = share, de
    return best


def cross_validate(net: torch.nn.Module, pairs: Sequence[Pair], steps: int, reg: float, device: torch.device,
                   progress: Progress | None = None) -> list[dict[str, Any]]:
    """Held-out estimate of a few-shot fit: leave-one-out up to :data:`MAX_FOLDS` pairs, else that many folds.

    Pairs are dealt to folds in name order; each fold is fitted on the other pairs and scored
    on its own, with the fold's style change applied in full and at each of
    :data:`STYLE_SHARES` (:func:`blend_style`). Returns one record per held-out pair:
    ``{"name", "fold", "before": {...}, "after": {...}, "shares": {share: {...}}}`` with dE2000
    and PSNR of the base, of the fold's full fit, and of each share. ``net`` is left unchanged.
    """
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    base_style = style_values(net)
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
    k = min(len(pairs), MAX_FOLDS)
    records: list[dict[str, Any]] = []
    for fold in range(k):
        held = [pairs[i] for j, i in enumerate(order) if j % k == fold]
        rest = [pairs[i] for j, i in enumerate(order) if j % k != fold]
        before = _per_pair(net, held, device)
        fit_style(net, rest, steps, reg, device)
        fitted = style_values(net)
        by_share: dict[float, list[dict[str, float]]] = {}
        for share in STYLE_SHARES:
            blend_style(net, base_style, fitted, share)
            by_share[share] = _per_pair(net, held, device)
        after = by_share[1.0]
        net.load_state_dict(base_state)
        for i, (p, b, a) in enumerate(zip(held, before, after)):
            records.append({"name": p[0], "fold": fold, "before": b, "after": a,
                            "shares": {share: rows[i] for share, rows in by_share.items()}})
        if progress:
            progress(f"fold {fold + 1}/{k}: held out {', '.join(p[0] for p in held)}: dE2000 "
                     f"{np.mean([b['delta_e2000'] for b in before]):.2f} -> {np.mean([a['delta_e2000'] for a in after]):.2f}")
    return records


def _mean(records: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = ("delta_e2000", "psnr")
    return {**{k: float(np.mean([r[k] for r in records])) for k in keys}, "images": len(records)}


def _widen_bounds(net: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Let the family widen its safety bounds to the studio's own edits (logged; kept in the model file)."""
    changed = net.widen_bounds(pairs)
    for key, value in changed.items():
        log.info("the studio's edits go further than the default allows: %s lowered to %.2f", key, value)


def _few_shot(net: torch.nn.Module, items: list[Any], cfg: TrainConfig, device: torch.device,
              progress: Progress | None
              ) -> tuple[dict[str, float], dict[str, float], list[dict[str, Any]], int, list[str], float]:
    """The few-shot regime: cross-validation chooses how much of the fit to keep (and reports
    it), then the style is fitted on every pair and that share of its change is kept.

    Returns (before, after, per-pair records, steps, held-out names, share kept).
    """
    side = min(cfg.max_side, STYLE_SIDE)
    pairs = load_val_pairs(items, side, cfg.val_without_mask)
    _widen_bounds(net, [(s, t) for _, s, t in pairs])
    steps = cfg.style_steps or style_steps_for(len(pairs))
    folds: list[dict[str, Any]] = []
    share = 1.0
    if len(pairs) >= 2 and cfg.cross_validate:
        folds = cross_validate(net, pairs, steps, cfg.style_reg, device, progress)
        share = choose_share(folds)
        folds = [{**f, "after": f["shares"][share] if share > 0 else f["before"]} for f in folds]
        if progress:
            progress(f"cross-validation keeps {share:.0%} of the fitted style change "
                     f"(held-out dE2000 {_mean([f['before'] for f in folds])['delta_e2000']:.2f} -> "
                     f"{_mean([f['after'] for f in folds])['delta_e2000']:.2f})")
    before = _mean([f["before"] for f in folds]) if folds else _mean(_per_pair(net, pairs, device))
    if share > 0.0:  # share 0: the base is kept as it is (finetune writes the base model)
        base_style = style_values(net)
        fit_style(net, pairs, steps, cfg.style_reg, device)
        if share < 1.0:
            blend_style(net, base_style, style_values(net), share)
    if folds:
        after = _mean([f["after"] for f in folds])
    else:  # one pair, or no estimate asked for: report the fit on the training pairs (said in the card)
        after = _mean(_per_pair(net, pairs, device))
    return before, after, folds, steps, [f["name"] for f in folds], share


def _many_pairs(net: torch.nn.Module, items: list[Any], cfg: TrainConfig, out: Path, device: torch.device,
                on_step: ProgressFn | None = None) -> tuple[dict[str, float], dict[str, float], torch.nn.Module, int, float, list[str]]:
    """The many-pairs regime: a fixed held-out split, the whole model trained with early stopping."""
    from ..data import split_items

    frac = max(cfg.val_fraction, MIN_HOLDOUT / len(items))
    train_items, val_items = split_items(items, frac, min_val=MIN_HOLDOUT)
    _widen_bounds(net, [(s, t) for _, s, t in load_val_pairs(train_items, STYLE_SIDE, cfg.val_without_mask)])
    val_pairs = load_val_pairs(val_items, cfg.val_max_side, cfg.val_without_mask)
    before, _ = evaluate(net, val_pairs, device)
    if not cfg.steps and not cfg.max_minutes:
        cfg.steps, cfg.max_minutes = many_pairs_budget(len(items))
        cfg.time_schedule = False  # the steps set the schedule, the cap only stops: same model on a busy machine
    res = fit(net, train_items, val_items, cfg, out, progress=on_step)
    after, _ = evaluate(res.net, val_pairs, device)
    return before, after, res.net, res.steps, res.images_per_s, [it.name for it in val_items]


@dataclass
class _Outcome:
    """What one regime did (internal to :func:`finetune`)."""

    regime: str
    before: dict[str, float]
    after: dict[str, float]
    final: torch.nn.Module
    steps: int
    held: list[str]
    how: str
    folds: list[dict[str, Any]] = field(default_factory=list)
    images_per_s: float = 0.0
    share: float | None = None   # few-shot: share of the fitted style change kept (cross-validated)


def _run_regime(net: torch.nn.Module, items: list[Any], cfg: TrainConfig, out: Path, device: torch.device,
                progress: Progress | None, on_step: ProgressFn | None) -> _Outcome:
    """The few-shot regime below ``cfg.few_pairs`` pairs, the many-pairs one from there."""
    if len(items) < cfg.few_pairs:
        before, after, folds, steps, held, share = _few_shot(net, items, cfg, device, progress)
        nf = len({f["fold"] for f in folds})
        how = (("leave-one-out" if nf == len(items) else f"{nf}-fold cross-validation")
               + f" over {len(folds)} pairs (each fold fitted on the others; the same folds chose the share"
               f" of the fit kept, {share:.2f}, so the estimate is slightly optimistic)" if folds
               else "no held-out estimate (one pair, or cross_validate off): metrics are on the training pairs")
        return _Outcome("few-shot", before, after, net, steps, held, how, folds, share=share)
    before, after, final, steps, ips, held = _many_pairs(net, items, cfg, out, device, on_step)
    return _Outcome("many pairs", before, after, final, steps, held,
                    f"{len(held)} held-out pairs, fixed by a hash of item names", images_per_s=ips)


def _write_model(o: _Outcome, out: Path, pairs: Path, n_items: int, base_path: Path, cfg: TrainConfig,
                 kept: str, seconds: float, command: str | None, device: torch.device) -> Path:
    """Write ``out/model.pt`` and its card (base model's data and commands carried over)."""
    from ..modelcard import command_line, read_card, write_card
    from ..nets.registry import save_model

    cmd = command or command_line()
    metrics = {"before": o.before, "after": o.after}
    path = save_model(o.final, out, extra={"train_config": cfg.to_dict(), "steps": o.steps, "metrics": metrics,
                                           "base": str(base_path), "command": cmd, "kept": kept, "regime": o.regime})
    base_card = read_card(base_path.parent)
    spec = o.final.spec
    write_card(
        out,
        family=spec.family,
        spec=spec.to_dict(),
        data={"pairs": str(pairs.resolve()), "items": n_items, "regime": o.regime, "estimate": o.how,
              "validation_items": o.held, "base_model": str(base_path), "base_data": base_card.get("data", {})},
        commands=[*base_card.get("commands", []), cmd],
        metrics=metrics,
        training={"steps": o.steps, "minutes": seconds / 60.0, "images_per_s": o.images_per_s, "kept": kept,
                  "regime": o.regime, "trained": "style parameters" if o.regime == "few-shot" else
                  ("context branch" if cfg.context_only else "all parameters"),
                  "style_share_kept": o.share,
                  "held_out": [{"name": f["name"], "fold": f["fold"], "before": f["before"]["delta_e2000"],
                                "after": f["after"]["delta_e2000"]} for f in o.folds],
                  "seed": cfg.seed, "device": str(device), "config": cfg.to_dict()},
    )
    return path


def finetune(
    pairs: str | Path,
    out: str | Path,
    base: str | Path = "default",
    cfg: TrainConfig | None = None,
    command: str | None = None,
    progress: Progress | None = None,
    on_step: ProgressFn | None = None,
) -> FinetuneResult:
    """Fine-tune model ``base`` (shipped name or path) on ``pairs``; write the result to ``out``.

    ``progress`` (optional) receives one line per cross-validation fold; ``on_step`` the
    training loop's :class:`~flambient.training.loop.TrainProgress` reports (many-pairs regime).
    Raises :class:`InputError` for a missing folder or no usable pairs.
    """
    from ..dataset import load_dataset
    from ..nets.registry import load_model, resolve_model_path

    cfg = cfg or finetune_config()
    pairs = Path(pairs)
    out = Path(out)
    net, _ = load_model(base)
    base_path = resolve_model_path(base)
    cfg.model, cfg.model_config = net.spec.family, dict(net.config)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flambient-ft-") as td:
        items = load_dataset(_dataset_from(pairs, Path(td), build_side(cfg)))
        if not items:
            raise InputError("no usable pairs found", pairs)
        net.to(device)
        o = _run_regime(net, items, cfg, out, device, progress, on_step)
        kept = "fine-tuned"
        if o.after["delta_e2000"] >= o.before["delta_e2000"] and (o.folds or o.regime == "many pairs"):
            kept = "base (fine-tuning did not improve the held-out estimate)"
            net, _ = load_model(base)  # the base as shipped: its weights and its bounds (not widened)
            net.to(device)
            o.final, o.after = net, o.before
        seconds = time.perf_counter() - t0
        log.info("%s fine-tune on %d pairs: dE2000 %.3f -> %.3f (%s); kept %s", o.regime, len(items),
                 o.before["delta_e2000"], o.after["delta_e2000"], o.how, kept)
        path = _write_model(o, out, pairs, len(items), base_path, cfg, kept, seconds, command, device)
    return FinetuneResult(before=o.before, after=o.after, kept=kept, steps=o.steps, seconds=seconds, model_path=path,
                          regime=o.regime, per_pair=o.folds)

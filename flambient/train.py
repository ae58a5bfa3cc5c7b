"""The training loop shared by ``flambient train`` and ``flambient finetune``.

One function, :func:`fit`, trains any registered family on paired data:

- paired flips, small rotations and window-mask dropout (:mod:`flambient.data`; ``process``
  builds stacks without masks); with ``whole_context`` (default, tileable families) the context
  is computed from the WHOLE augmented image and ``apply`` runs on a random crop at its true
  position, exactly as tiled inference does; otherwise plain random crops. Progressive
  resolution: the crop grows from 1/2 to the full crop size over the run;
- loss: the family's own ``training_loss(x, y)`` when it returns a tensor, otherwise
  L1 + SSIM + CIELAB (:mod:`flambient.losses`) on ``forward(x)``; plus ``regulariser()`` when the
  family defines one (the LUT smoothness term);
- AdamW, linear warm-up then cosine decay over the run's *progress* (the larger of the step
  fraction and the time fraction, so ``--steps`` and ``--max-minutes`` both end on a low LR),
  gradient clipping, EMA weights (what is validated and saved), bf16 autocast on CUDA;
- validation every epoch on whole images (dE2000, PSNR), a CSV log, a PNG plot, preview
  JPEGs, a checkpoint after each validation (``resume=True`` continues from it), optional
  early stopping (fine-tuning keeps the best validated weights);
- DDP through :mod:`torch.distributed` when started by ``torchrun`` (env ``WORLD_SIZE`` > 1):
  gloo on CPU, nccl on CUDA; each rank draws a different share of each epoch, rank 0 writes.

All randomness derives from ``(seed, rank, step)``, so a resumed run draws the same batches as an
uninterrupted one would.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from .data import Augment, PairStore, epoch_order, progressive_crop, resize_pair, sample_batch
from .dataset import PairItem
from .devices import parse_device
from .errors import ConfigError, DeviceError, InputError, first_line
from .log import console, get_logger
from .losses import LossWeights, blend_loss
from .nets.registry import FlambientNet
from .schema import Field, dataclass_fields
from .schema import validate as validate_schema

log = get_logger("train")

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "log.csv"
PLOT_PNG = "curves.png"
CSV_FIELDS = ["step", "epoch", "seconds", "lr", "crop", "loss", "l1", "ssim", "lab", "images_per_s",
              "val_delta_e2000", "val_psnr"]


@dataclass
class TrainConfig:
    """Every training setting; a YAML config file may set any of these keys (others are errors).

    Budgets: the run stops at ``steps`` optimiser steps or ``max_minutes`` of training time
    (time spent in steps, validation excluded), whichever comes first (0 = no limit of that
    kind; with neither, 1000 steps). ``max_side`` downsizes training images on load;
    ``val_without_mask`` validates the way ``process`` runs (no window masks).
    """

    model: str = "bilateral"
    model_config: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    max_minutes: float = 0.0
    batch: int = 8
    crop: int = 256
    whole_context: bool = True
    progressive_stages: int = 3
    max_side: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    amp: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    val_every: int = 0
    val_max_side: int = 512
    patience: int = 0
    keep_best: bool = False
    context_only: bool = False
    loss_l1: float = 1.0
    loss_ssim: float = 0.2
    loss_lab: float = 0.5
    chroma_weight: float = 2.0
    hflip: float = 0.5
    vflip: float = 0.0
    rotate_deg: float = 3.0
    mask_dropout: float = 0.5
    frame_dropout: float = 0.0
    exposure_jitter: float = 0.0
    val_without_mask: bool = True
    previews: int = 3
    log_every: int = 10
    device: str = "auto"
    few_pairs: int = 40
    style_lr_scale: float = 1.0
    style_steps: int = 0
    style_reg: float = 0.05
    cross_validate: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        checks = [
            (self.steps >= 0, "steps must be >= 0"),
            (self.max_minutes >= 0, "max_minutes must be >= 0"),
            (self.batch >= 1, "batch must be >= 1"),
            (self.crop >= 16, "crop must be >= 16 px"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup < 1, "warmup is a fraction of the run in [0, 1)"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (0 <= self.mask_dropout <= 1, "mask_dropout must be in [0, 1]"),
            (0 <= self.frame_dropout <= 1, "frame_dropout must be in [0, 1]"),
            (0 <= self.exposure_jitter <= 4, "exposure_jitter must be in [0, 4] stops"),
            (self.few_pairs >= 0, "few_pairs must be >= 0"),
            (self.style_steps >= 0, "style_steps must be >= 0"),
            (self.style_reg >= 0, "style_reg must be >= 0"),
            (self.style_lr_scale > 0, "style_lr_scale must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        try:
            self.device = parse_device(self.device)  # the one device grammar (flambient.devices)
        except DeviceError as exc:
            raise ConfigError(f"device: {exc.message}", hint=exc.hint) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML- and weights_only-safe)."""
        return dataclasses.asdict(self)


def config_fields() -> dict[str, Any]:
    """Name -> type annotation string of every :class:`TrainConfig` key."""
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def config_schema() -> dict[str, Field]:
    """The declarative schema of a training config (:mod:`flambient.schema`), from the defaults."""
    return dataclass_fields(TrainConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The keys a YAML training config sets, type-checked (ConfigError on any problem)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", p)
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML ({first_line(exc)})", p) from None
    return validate_schema(doc, config_schema(), p)


def make_config(path: str | Path | None = None, base: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Build a :class:`TrainConfig`: defaults, then ``base``, then the YAML file, then overrides.

    Overrides that are None count as not given. With neither ``steps`` nor ``max_minutes`` set,
    the run is 1000 steps. Raises :class:`ConfigError` for malformed YAML, unknown keys, wrong
    types or bad values, including a ``model_config`` the family's constructor refuses.
    """
    defaults = TrainConfig()
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(read_config_file(path))
    for k, v in overrides.items():
        if v is not None:
            values[k] = v
    values = validate_schema(values, config_schema())
    cfg = dataclasses.replace(defaults, **values)
    if not cfg.steps and not cfg.max_minutes:
        cfg.steps = 1000
    cfg.validate()
    if cfg.model_config:
        from .nets.registry import create_model

        try:
            create_model(cfg.model, **cfg.model_config)  # the family's own checks, before any work
        except ConfigError as exc:
            raise ConfigError(exc.message, Path(path) if path is not None else None, exc.hint) from None
    return cfg


# ----------------------------------------------------------------------------- devices / DDP


@dataclass
class Dist:
    """Where this process trains: rank, world size, device; ``owned`` if we initialised DDP."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owned: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU raises DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no GPU is available", hint="use --devices cpu or auto")
    return torch.device(name)


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    owned = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owned = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=dev, owned=owned)


def _all_agree(flag: bool, d: Dist) -> bool:
    """Rank 0's decision, broadcast to every rank (so all stop at the same step)."""
    if d.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)


# ----------------------------------------------------------------------------- pieces


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """Learning rate at run progress in [0, 1]: linear warm-up, then cosine to ``min_lr_ratio``."""
    p = min(max(progress, 0.0), 1.0)
    if cfg.warmup > 0 and p < cfg.warmup:
        return cfg.lr * max(p / cfg.warmup, 0.01)
    q = (p - cfg.warmup) / max(1e-9, 1.0 - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * q)))


class _LossModule(nn.Module):
    """Wraps a net so that one ``forward`` returns the training loss (what DDP wraps).

    With ``box`` = (y0, x0, h, w) the net works as at inference on a large image: the context
    comes from the WHOLE (augmented) image ``x`` and ``apply`` runs on the crop ``box`` only,
    with the crop's position; the loss is taken on that crop. Without ``box`` the whole image
    goes through ``forward``. A family's own ``training_loss(x, y, ctx)`` (diffusion) gets the crop
    and the whole image's context.
    """

    def __init__(self, net: FlambientNet, weights: LossWeights) -> None:
        super().__init__()
        self.net = net
        self.weights = weights
        self.parts: dict[str, float] = {}

    def forward(self, x: torch.Tensor, y: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        xc, yc = x, y
        if box is not None:
            y0, x0, h, w = box
            xc, yc = x[:, :, y0 : y0 + h, x0 : x0 + w], y[:, :, y0 : y0 + h, x0 : x0 + w]
        # As at inference, the context is the WHOLE image's, computed once for either loss.
        ctx = self.net.context_of(x)
        loss = self.net.training_loss(xc, yc, ctx=ctx)
        if loss is None:
            y0, x0 = (box[0], box[1]) if box is not None else (0, 0)
            pos = torch.tensor([float(y0), float(x0), float(x.shape[-2]), float(x.shape[-1])], device=x.device)
            loss, self.parts = blend_loss(self.net.apply(xc, ctx, pos), yc, self.weights)
        else:
            self.parts = {"l1": float("nan"), "ssim": float("nan"), "lab": float("nan")}
        reg = self.net.regulariser()
        if reg is not None:
            loss = loss + reg
        return loss


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for float parameters and buffers."""
    for (_, e), (_, p) in zip(ema.state_dict().items(), net.state_dict().items()):
        if e.dtype.is_floating_point:
            e.lerp_(p.detach(), 1.0 - decay)
        else:
            e.copy_(p)


def load_val_pairs(items: Sequence[PairItem], max_side: int, without_mask: bool = True) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, stack, target) of the validation items, downscaled to ``max_side`` px.

    ``without_mask`` removes window masks, as ``process`` runs (shoots come without masks).
    """
    from .data import drop_mask

    out = []
    for it in items:
        stack, target = resize_pair(*it.load(), max_side)
        out.append((it.name, drop_mask(stack) if without_mask else stack, target))
    return out


@torch.no_grad()
def predict(net: FlambientNet, stack: np.ndarray, device: torch.device) -> np.ndarray:
    """Whole-image forward of an HxWx13 linear stack -> HxWx3 sRGB float32 in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(stack)).permute(2, 0, 1)[None].to(device)
    out = net(x)[0].float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    return out.astype(np.float32)


def evaluate(net: FlambientNet, pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], device: torch.device,
             keep: int = 0) -> tuple[dict[str, float], list[np.ndarray]]:
    """Mean dE2000 and PSNR of ``net`` over validation pairs; also the first ``keep`` predictions."""
    from .metrics import delta_e_stats, psnr  # owned by the eval module; imported lazily

    was_training = net.training
    net.eval()
    des, ps, kept = [], [], []
    for i, (_, stack, target) in enumerate(pairs):
        pred = predict(net, stack, device)
        des.append(delta_e_stats(pred, target)[0])
        ps.append(psnr(pred, target))
        if i < keep:
            kept.append(pred)
    net.train(was_training)
    return {"delta_e2000": float(np.mean(des)), "psnr": float(np.mean(ps)), "images": len(pairs)}, kept


def write_preview(path: Path, pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], preds: Sequence[np.ndarray],
                  height: int = 160) -> None:
    """A JPEG with one row per validation image: ambient (sRGB), prediction, target."""
    import cv2

    from .colour import linear_to_srgb
    from .io.images import write_jpeg

    rows = []
    for (_, stack, target), pred in zip(pairs, preds):
        tiles = [linear_to_srgb(np.clip(stack[:, :, 0:3], 0, 1)), pred, target]
        h, w = target.shape[:2]
        size = (max(1, round(w * height / h)), height)
        rows.append(np.concatenate([cv2.resize(t.astype(np.float32), size, interpolation=cv2.INTER_AREA) for t in tiles], axis=1))
    if rows:
        width = min(r.shape[1] for r in rows)
        write_jpeg(path, np.concatenate([r[:, :width] for r in rows], axis=0), quality=85)


def write_plot(csv_path: Path, png_path: Path) -> None:
    """Plot training loss and validation dE2000 against the step from the CSV log (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io.atomic import atomic_path

    steps, loss, vsteps, vde = [], [], [], []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("loss"):
                steps.append(int(row["step"]))
                loss.append(float(row["loss"]))
            if row.get("val_delta_e2000"):
                vsteps.append(int(row["step"]))
                vde.append(float(row["val_delta_e2000"]))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
    a1.plot(steps, loss, lw=1)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a1.set_yscale("log")
    a2.plot(vsteps, vde, "o-", ms=3)
    a2.set_xlabel("step")
    a2.set_ylabel("validation dE2000 (EMA)")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in CSV_FIELDS})


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`fit` did. ``net`` holds the weights that were saved (EMA or best EMA)."""

    net: FlambientNet
    steps: int
    seconds: float
    images: int
    images_per_s: float
    crop: int
    metrics: dict[str, float]
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped: str


def fit(
    net: FlambientNet,
    train_items: Sequence[PairItem],
    val_items: Sequence[PairItem],
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
) -> TrainResult:
    """Train ``net`` in place on ``train_items``, validating on ``val_items``; write to ``out``.

    Writes ``out/checkpoint.pt`` (resumable), ``out/log.csv``, ``out/curves.png`` and
    ``out/previews/step_NNNNNN.jpg`` (rank 0). Returns the EMA net (the best validated one when
    ``cfg.keep_best`` or ``cfg.patience``). Saving the model file and card is the caller's job.
    """
    out = Path(out)
    d = setup_distributed(cfg.device)
    try:
        return _fit(net, list(train_items), list(val_items), cfg, out, resume, d)
    finally:
        if d.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(net: FlambientNet, train_items: list[PairItem], val_items: list[PairItem], cfg: TrainConfig, out: Path,
         resume: bool, d: Dist) -> TrainResult:
    ckpt_path = out / CHECKPOINT
    if not resume and (ckpt_path.exists() or (out / LOG_CSV).exists()):
        raise InputError("this folder already holds a training run", out,
                         "continue it with --resume, or choose another --out")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    if resume and not ckpt_path.is_file():
        raise InputError("nothing to resume: no checkpoint.pt here", out, "start without --resume")
    torch.manual_seed(cfg.seed)
    net.to(d.device).train()
    if cfg.context_only:
        trainable = {id(p) for p in net.context_parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in trainable)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters with these settings")
    # The global style (a few O(1) numbers) learns at style_lr_scale x the rate, without decay.
    style_ids = {id(p) for p in net.style_parameters()} if cfg.style_lr_scale != 1.0 else set()
    if style_ids and len(style_ids) < len(params):
        groups = [{"params": [p for p in params if id(p) not in style_ids], "scale": 1.0},
                  {"params": [p for p in params if id(p) in style_ids], "scale": cfg.style_lr_scale,
                   "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "scale": 1.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)

    step, epoch, pos, elapsed, images = 0, 0, 0, 0.0, 0
    best: dict[str, float] = {}
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals = 0
    history: list[dict[str, float]] = []
    if resume:
        ck = torch.load(ckpt_path, map_location=d.device, weights_only=True)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, epoch, pos = int(ck["step"]), int(ck["epoch"]), int(ck["pos"])
        elapsed, images = float(ck["elapsed"]), int(ck["images"])
        best, bad_evals, history = dict(ck["best"]), int(ck["bad_evals"]), list(ck["history"])
        best_state = ck.get("best_state")
        if d.main:
            log.info("resuming from step %d (%.1f min trained)", step, elapsed / 60)

    module = _LossModule(net, LossWeights(cfg.loss_l1, cfg.loss_ssim, cfg.loss_lab, cfg.chroma_weight))
    model: nn.Module = module
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(module, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                    find_unused_parameters=cfg.context_only)
        if not resume:  # DDP broadcast rank 0's weights into net: start every rank's EMA from them
            ema.load_state_dict(net.state_dict())
    store = PairStore(train_items, cfg.max_side)
    val_pairs = load_val_pairs(val_items, cfg.val_max_side, cfg.val_without_mask) if d.main else []
    aug = Augment(hflip=cfg.hflip, vflip=cfg.vflip, rotate_deg=cfg.rotate_deg, mask_dropout=cfg.mask_dropout,
                  frame_dropout=cfg.frame_dropout, exposure_jitter=cfg.exposure_jitter)
    per_rank = max(1, math.ceil(len(store) / d.world))
    steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch))
    val_every = cfg.val_every or steps_per_epoch
    use_amp = cfg.amp and d.device.type == "cuda"

    def progress_of(s: int, secs: float) -> float:
        fr = [s / cfg.steps] if cfg.steps else []
        fr += [secs / (cfg.max_minutes * 60.0)] if cfg.max_minutes else []
        return max(fr)

    def validate_and_checkpoint() -> bool:
        """Rank 0: validate the EMA, log, preview, checkpoint; returns True to stop early."""
        nonlocal best, best_state, bad_evals
        stop = False
        if d.main:
            metrics, preds = evaluate(ema, val_pairs, d.device, keep=cfg.previews)
            history.append({"step": step, **metrics})
            _append_csv(out / LOG_CSV, {"step": step, "epoch": epoch, "seconds": elapsed,
                                        "val_delta_e2000": metrics["delta_e2000"], "val_psnr": metrics["psnr"]})
            if not best or metrics["delta_e2000"] < best["delta_e2000"] - 1e-3:
                best, bad_evals = {"step": step, **metrics}, 0
                if cfg.keep_best or cfg.patience:
                    best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            else:
                bad_evals += 1
                stop = bool(cfg.patience) and bad_evals >= cfg.patience
            log.info("step %d: validation dE2000 %.3f, PSNR %.2f dB", step, metrics["delta_e2000"], metrics["psnr"])
            if cfg.previews and val_pairs:
                (out / "previews").mkdir(exist_ok=True)
                write_preview(out / "previews" / f"step_{step:06d}.jpg", val_pairs[: cfg.previews], preds)
            write_plot(out / LOG_CSV, out / PLOT_PNG)
            from .io.atomic import atomic_path

            ck = {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                  "epoch": epoch, "pos": pos, "elapsed": elapsed, "images": images, "best": best,
                  "bad_evals": bad_evals, "history": history, "config": cfg.to_dict()}
            if best_state is not None:
                ck["best_state"] = best_state
            with atomic_path(ckpt_path) as tmp:
                torch.save(ck, tmp)
        return stop

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress(TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                    TextColumn("step {task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=not d.main or not log.isEnabledFor(logging.INFO) or not console.is_terminal,
                    transient=False)  # off under -q and off a terminal
    stopped = "budget"
    run_loss: list[float] = []
    win_t, win_imgs, crop = 0.0, 0, cfg.crop
    with prog:
        task = prog.add_task("train", total=1000, step=step, loss="-")
        if resume:
            prog.update(task, completed=1000 * min(1.0, progress_of(step, elapsed)))
        while True:
            done = progress_of(step, elapsed) >= 1.0
            if _all_agree(done, d):
                break
            t0 = time.perf_counter()
            order = epoch_order(len(store), epoch, cfg.seed, d.rank, d.world)
            idx = order[pos * cfg.batch : (pos + 1) * cfg.batch]
            if len(idx) == 0:
                idx = order[: cfg.batch]
            rng = np.random.default_rng([cfg.seed, d.rank, step])
            progress = progress_of(step, elapsed)
            crop = progressive_crop(cfg.crop, progress, cfg.progressive_stages, max(1, net.spec.size_multiple))
            box = None
            if cfg.whole_context and net.spec.tileable:
                # Whole images (common size of the batch) for the context, the loss on a crop.
                x, y = sample_batch(store, idx, 1 << 30, aug, rng)
                ch, cw = min(crop, x.shape[-2]), min(crop, x.shape[-1])
                m = max(1, net.spec.size_multiple)
                ch, cw = max(m, ch // m * m), max(m, cw // m * m)
                box = (int(rng.integers(0, x.shape[-2] - ch + 1)), int(rng.integers(0, x.shape[-1] - cw + 1)), ch, cw)
            else:
                x, y = sample_batch(store, idx, crop, aug, rng)
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = lr_at(progress, cfg) * g.get("scale", 1.0)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = model(x, y, box)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at step {step}")
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            ema_update(ema, net, min(cfg.ema_decay, (1.0 + step) / (10.0 + step)))
            step += 1
            pos += 1
            images += len(idx) * d.world
            dt = time.perf_counter() - t0
            elapsed += dt
            win_t += dt
            win_imgs += len(idx)
            run_loss.append(float(loss.detach()))
            end_epoch = pos >= steps_per_epoch
            if end_epoch:
                epoch, pos = epoch + 1, 0
            if d.main and (step % cfg.log_every == 0 or end_epoch):
                _append_csv(out / LOG_CSV, {"step": step, "epoch": epoch, "seconds": elapsed, "lr": lr_at(progress, cfg),
                                            "crop": crop, "loss": float(np.mean(run_loss)), **module.parts,
                                            "images_per_s": win_imgs / max(win_t, 1e-9)})
                prog.update(task, loss=f"{np.mean(run_loss):.4f}")
                run_loss, win_t, win_imgs = [], 0.0, 0
            prog.update(task, completed=1000 * min(1.0, progress_of(step, elapsed)), step=step)
            if step % val_every == 0:
                stop = validate_and_checkpoint()
                if _all_agree(stop, d):
                    stopped = "early stopping"
                    break
        if d.main and (not history or history[-1]["step"] != step):
            validate_and_checkpoint()
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
    if best_state is not None and (cfg.keep_best or cfg.patience):
        ema.load_state_dict(best_state)
    final = history[-1] if history else {}
    chosen = best if (best_state is not None and (cfg.keep_best or cfg.patience)) else final
    ips = images / max(elapsed, 1e-9)
    return TrainResult(net=ema, steps=step, seconds=elapsed, images=images, images_per_s=ips, crop=crop,
                       metrics={k: v for k, v in chosen.items()}, best_metrics=best, history=history, stopped=stopped)


# ----------------------------------------------------------------------------- train command


def load_datasets(datasets: str | Path | Sequence[str | Path]) -> list[PairItem]:
    """The items of one or several dataset folders, in order.

    Item names must be unique (they fix the validation split); when two folders hold the same
    name, every item of the later folder is renamed ``<folder name>/<item name>``.
    """
    from .dataset import load_dataset

    folders = [datasets] if isinstance(datasets, (str, Path)) else list(datasets)
    items: list[PairItem] = []
    seen: set[str] = set()
    for folder in folders:
        batch = load_dataset(folder)
        if any(it.name in seen for it in batch):
            batch = [dataclasses.replace(it, name=f"{Path(folder).name}/{it.name}") for it in batch]
        seen.update(it.name for it in batch)
        items.extend(batch)
    return items


def train_dataset(
    dataset: str | Path | Sequence[str | Path],
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    command: str | None = None,
    extra_commands: Sequence[str] = (),
) -> TrainResult:
    """``flambient train``: train a fresh ``cfg.model`` net on one or more dataset folders.

    Writes ``out/model.pt`` (EMA weights; train config, steps and metrics in its meta) and the
    ``out/model.yaml`` card. ``extra_commands`` (e.g. the ``synth`` line that made the data)
    are recorded in the card before the training command.
    """
    from .data import split_items
    from .modelcard import command_line, read_card, write_card
    from .nets.registry import create_model, save_model

    items = load_datasets(dataset)
    folders = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    train_items, val_items = split_items(items, cfg.val_fraction)
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.model, **cfg.model_config)  # ConfigError when the family refuses model_config
    earlier = list(read_card(out).get("commands", [])) if resume else []
    res = fit(net, train_items, val_items, cfg, out, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return res
    cmd = command or command_line()
    # A resumed run keeps the command lines of the run(s) it continues.
    commands = earlier + [c for c in extra_commands if c not in earlier] + [cmd]
    meta = {"train_config": cfg.to_dict(), "steps": res.steps, "metrics": res.metrics,
            "images_per_s": res.images_per_s, "command": cmd}
    save_model(res.net, out, extra=meta)
    write_card(
        out,
        family=net.spec.family,
        spec=net.spec.to_dict(),
        data={"dataset": ", ".join(str(Path(f).resolve()) for f in folders), "items": len(items), "train_items": len(train_items),
              "validation_items": [it.name for it in val_items], "split": "fixed by a hash of item names",
              "validation_max_side": cfg.val_max_side},
        commands=commands,
        metrics={k: res.metrics.get(k) for k in ("delta_e2000", "psnr", "images", "step")},
        training={"steps": res.steps, "minutes": res.seconds / 60.0, "images_seen": res.images,
                  "images_per_s": res.images_per_s, "final_crop": res.crop, "seed": cfg.seed,
                  "device": str(pick_device(cfg.device)), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                  "torch": torch.__version__, "config": cfg.to_dict()},
    )
    return res

"""Validation of a training run: whole-image metrics of the EMA net, the CSV log, plot and previews.

:func:`validate` is what the loop calls (rank 0): it scores ``state.ema`` on the validation
pairs, records the result in ``state`` (history, best, patience) and writes the log, the plot
and the preview JPEG. The smaller pieces (:func:`predict`, :func:`evaluate`,
:func:`load_val_pairs`) are shared with ``finetune`` and the benchmarks.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import resize_pair
from ..dataset import PairItem
from ..log import get_logger
from ..nets.registry import FlambientNet
from .config import TrainConfig
from .state import TrainState

log = get_logger("train")

LOG_CSV = "log.csv"
PLOT_PNG = "curves.png"
CSV_FIELDS = ["step", "epoch", "seconds", "lr", "crop", "loss", "l1", "ssim", "lab", "images_per_s",
              "val_delta_e2000", "val_psnr"]
#: Validation pairs: (item name, H x W x 13 linear stack, H x W x 3 sRGB target).
ValPair = tuple[str, np.ndarray, np.ndarray]


def load_val_pairs(items: Sequence[PairItem], max_side: int, without_mask: bool = True) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, stack, target) of the validation items, downscaled to ``max_side`` px.

    ``without_mask`` removes window masks, as ``process`` runs (shoots come without masks).
    """
    from ..data import drop_mask

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
    from ..metrics import delta_e_stats, psnr  # owned by the eval module; imported lazily

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

    from ..colour import linear_to_srgb
    from ..io.images import write_jpeg

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

    from ..io.atomic import atomic_path

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


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` (keys of :data:`CSV_FIELDS`; floats to 6 digits) to the run's CSV log, header first."""
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in CSV_FIELDS})


def validate(state: TrainState, pairs: Sequence[ValPair], cfg: TrainConfig, out: Path, device: torch.device) -> bool:
    """Score ``state.ema`` on ``pairs``, record it in ``state`` and write log, plot and preview.

    A dE2000 lower than the best by more than 1e-3 is the new best (its EMA weights kept when
    ``cfg.keep_best`` or ``cfg.patience``); otherwise ``bad_evals`` grows. Returns True when
    early stopping should end the run (``patience`` validations in a row without improvement).
    """
    metrics, preds = evaluate(state.ema, pairs, device, keep=cfg.previews)
    state.history.append({"step": state.step, **metrics})
    append_csv(out / LOG_CSV, {"step": state.step, "epoch": state.epoch, "seconds": state.elapsed,
                               "val_delta_e2000": metrics["delta_e2000"], "val_psnr": metrics["psnr"]})
    stop = False
    if not state.best or metrics["delta_e2000"] < state.best["delta_e2000"] - 1e-3:
        state.best, state.bad_evals = {"step": state.step, **metrics}, 0
        if cfg.keep_best or cfg.patience:
            state.best_state = {k: v.detach().clone() for k, v in state.ema.state_dict().items()}
    else:
        state.bad_evals += 1
        stop = bool(cfg.patience) and state.bad_evals >= cfg.patience
    log.info("step %d: validation dE2000 %.3f, PSNR %.2f dB", state.step, metrics["delta_e2000"], metrics["psnr"])
    if cfg.previews and pairs:
        (out / "previews").mkdir(exist_ok=True)
        write_preview(out / "previews" / f"step_{state.step:06d}.jpg", pairs[: cfg.previews], preds)
    write_plot(out / LOG_CSV, out / PLOT_PNG)
    return stop

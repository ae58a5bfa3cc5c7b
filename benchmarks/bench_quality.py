"""Benchmark: quality of a trained model against the classical baselines, fine-tuning, throughput.

Three parts (each can be skipped):

1. **quality**: on a held-out synthetic validation set of the model's own style (``--val``, by
   default generated: ``synth_pairs(seed=2, style=studio, 60 pairs, 384x256)``; the default
   model trained on seed 1), mean CIEDE2000 (and its 95th percentile) and PSNR of the model and
   of the baselines of :mod:`flambient.baselines` (ambient only, luminosity blend of flash over
   ambient, OpenCV Mertens fusion), all on the same whole images. Window masks are removed from
   the stacks first: ``process`` runs shoots without masks.
2. **finetune**: :func:`flambient.training.finetune.finetune` of the model on ``--ft-train`` (default 64
   pairs of ``--style natural``, seed 3) for at most ``--ft-minutes`` on ``--threads`` CPU
   threads; dE2000 on ``--ft-val`` (32 more natural pairs, seed 4, never seen) before and after.
3. **throughput**: training images/s at 512x512 (whole-image forward + backward + AdamW step,
   batch 4) on CPU, and on CUDA when available.
4. **real** (with ``--real SHOOT``): the model on a real bracket shoot. The frames are copied to
   a temporary folder, grouped and normalised by :func:`flambient.ingest.ingest_shoot` /
   ``load_set_stack``, and run whole-image at their size (1280 px for the shared test shoot);
   before/after JPEGs (ambient | flash, and the model's final) go to ``--images``.

Prints a rich table per part and writes JSON (``--json``, default benchmarks/results/quality.json).
Usage: ``python benchmarks/bench_quality.py [--model default] [--val DIR] [--skip-finetune]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flambient.io.atomic import atomic_write_text
from flambient.log import console, setup_logging


def _dataset(path: str | None, tmp: Path, name: str, n: int, seed: int, style: str) -> Path:
    """``path`` when given, else a freshly synthesised dataset (the same call every time)."""
    if path:
        return Path(path)
    from flambient.synth.shoot import synth_pairs

    console.print(f"synthesising {n} {style} pairs (seed {seed}) ...")
    synth_pairs(tmp / name, pairs=n, size=(384, 256), seed=seed, style=style, workers=2)
    return tmp / name


def quality(model: str, val: Path, bracket_floor: float | None = None) -> dict[str, dict[str, float]]:
    """Mean dE2000 / p95 / PSNR of the model and the baselines on every item of ``val``.

    ``bracket_floor`` (stops, ``adaptive`` only): run the model with its bracket sets' exposure
    floor there instead of the one its file records, giving way nowhere (``-2``, the bound of
    ``ev_range``, is no floor at all); the model file is not changed. It says how much of the
    model's score its floor costs on a style whose truth sits under the ambient frame.
    """
    from flambient.baselines import run_baselines
    from flambient.data import drop_mask
    from flambient.dataset import load_dataset
    from flambient.metrics import delta_e_stats, psnr
    from flambient.nets.registry import load_model
    from flambient.training import predict

    net, _ = load_model(model)
    if bracket_floor is not None:
        if not hasattr(net, "set_training_bracket_floor"):
            raise SystemExit(f"--bracket-floor: model {model!r} ({net.spec.family}) has no bracket exposure floor")
        net.set_training_bracket_floor(bracket_floor)
    scores: dict[str, list[tuple[float, float, float]]] = {}
    for item in load_dataset(val):
        stack, target = item.load()
        stack = drop_mask(stack)
        preds = {"model": predict(net, stack, torch.device("cpu")), **run_baselines(stack)}
        for name, pred in preds.items():
            m, p95 = delta_e_stats(pred, target)
            scores.setdefault(name, []).append((m, p95, psnr(pred, target)))
            if name == "model":
                scores.setdefault(f"model, {_frames(stack)}", []).append(scores["model"][-1])
    return {name: {"delta_e2000": float(np.mean([s[0] for s in v])), "delta_e2000_p95": float(np.mean([s[1] for s in v])),
                   "psnr": float(np.mean([s[2] for s in v])), "images": len(v)} for name, v in scores.items()}


def _frames(stack: np.ndarray) -> str:
    """Which frames an HxWx13 stack holds: "flash+window", "flash", "window" or "single"."""
    from flambient.stack import HAS_FLASH, HAS_WINDOW

    kinds = [k for k, c in (("flash", HAS_FLASH), ("window", HAS_WINDOW)) if stack[0, 0, c] > 0.5]
    return "+".join(kinds) or "single"


def finetune_part(model: str, train: Path, val: Path, minutes: float, tmp: Path) -> dict[str, float]:
    """Fine-tune ``model`` on ``train`` within ``minutes``; dE2000 on ``val`` before and after."""
    from flambient.training.finetune import finetune, finetune_config

    t0 = time.perf_counter()
    cfg = finetune_config(None, max_minutes=minutes, previews=0, seed=0)
    res = finetune(train, tmp / "ft", base=model, cfg=cfg, command="bench_quality finetune")
    wall = time.perf_counter() - t0
    before = quality(model, val)["model"]
    after = quality(str(tmp / "ft"), val)["model"]
    return {"train_pairs": len(list((train / "items").iterdir())), "steps": res.steps,
            "train_minutes": res.seconds / 60, "wall_minutes": wall / 60, "kept": res.kept,
            "internal_val_before": res.before["delta_e2000"], "internal_val_after": res.after["delta_e2000"],
            "heldout_before": before["delta_e2000"], "heldout_after": after["delta_e2000"],
            "heldout_psnr_before": before["psnr"], "heldout_psnr_after": after["psnr"],
            "reduction": 1.0 - after["delta_e2000"] / before["delta_e2000"]}


def throughput(model: str, device: str, batch: int = 4, size: int = 512, steps: int = 4) -> float:
    """Training images/s at ``size`` x ``size`` (forward + loss + backward + AdamW), after 1 warm-up step."""
    from flambient.losses import blend_loss
    from flambient.nets.registry import load_model

    net, _ = load_model(model)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 13, size, size, generator=g) * 0.5).to(device)
    x[:, 9:] = 1.0
    y = torch.rand(batch, 3, size, size, generator=g).to(device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss, _ = blend_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times[1:]))


def real_shoot(model: str, shoot: Path, images: Path, tmp: Path, width: int = 480) -> list[dict[str, object]]:
    """Run ``model`` on every bracket set of a real shoot; write small before/after JPEGs."""
    import shutil

    import cv2

    from flambient.colour import linear_to_srgb
    from flambient.ingest import ingest_shoot, load_set_stack
    from flambient.io.images import write_jpeg
    from flambient.nets.registry import load_model
    from flambient.stack import AMBIENT, FLASH, HAS_FLASH
    from flambient.training import predict

    net, _ = load_model(model)
    copy = tmp / "real_shoot"
    copy.mkdir()
    for f in sorted(shoot.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            shutil.copy(f, copy / f"{f.parent.name}_{f.name}")
    manifest = ingest_shoot(copy, n_jobs=2)
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for bset in manifest.sets:
        stack = load_set_stack(copy, bset, use_cache=False)
        t0 = time.perf_counter()
        final = predict(net, stack, torch.device("cpu"))
        secs = time.perf_counter() - t0
        h, w = final.shape[:2]
        size = (width, max(1, round(h * width / w)))

        def small(img: np.ndarray) -> np.ndarray:
            return cv2.resize(np.ascontiguousarray(img, dtype=np.float32), size, interpolation=cv2.INTER_AREA)

        # The frames as shot: the ambient at its own exposure; the flash frame scaled back to its
        # exposure is unknown here, so show it normalised to the same 99th-percentile white.
        amb = linear_to_srgb(np.clip(stack[:, :, AMBIENT], 0, 1))
        before = [small(amb)]
        if stack[0, 0, HAS_FLASH] > 0.5:
            fl = stack[:, :, FLASH]
            before.append(small(linear_to_srgb(np.clip(fl / max(1e-6, float(np.percentile(fl, 99))), 0, 1))))
        b_path = images / f"real_{bset.name}_before.jpg"
        a_path = images / f"real_{bset.name}_after.jpg"
        write_jpeg(b_path, np.concatenate(before, axis=1), quality=82)
        write_jpeg(a_path, small(final), quality=82)
        rows.append({"set": bset.name, "size": f"{w}x{h}", "frames": len(bset.frames), "seconds": secs,
                     "before": str(b_path), "after": str(a_path),
                     "before_kb": b_path.stat().st_size / 1024, "after_kb": a_path.stat().st_size / 1024})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--val", help="held-out dataset of the model's style (default: synthesised, seed 2)")
    ap.add_argument("--ft-train", help="fine-tuning pairs (default: 64 natural pairs, seed 3)")
    ap.add_argument("--ft-val", help="held-out pairs of the fine-tuning style (default: 32 natural, seed 4)")
    ap.add_argument("--ft-minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bracket-floor", type=float, metavar="EV",
                    help="quality part: the model's bracket exposure floor at EV stops, giving way nowhere (adaptive; -2 = none)")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--real", help="a real bracket shoot folder to run the model on (pictures only)")
    ap.add_argument("--images", default="docs/images", help="where --real writes its before/after JPEGs")
    ap.add_argument("--card", action="store_true", help="also record the results in the model's model.yaml")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "quality.json"))
    args = ap.parse_args(argv)
    if args.card and args.bracket_floor is not None:
        ap.error("--card records the model as shipped: leave out --bracket-floor")
    setup_logging()
    torch.set_num_threads(args.threads)
    from rich.table import Table

    out: dict[str, object] = {"model": args.model, "threads": args.threads, "torch": torch.__version__,
                              "machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory(prefix="flambient-bench-") as td:
        tmp = Path(td)
        if not args.skip_quality:
            val = _dataset(args.val, tmp, "studio_val", 60, 2, "studio")
            q = quality(args.model, val, args.bracket_floor)
            out["quality"] = {"dataset": str(val), **q}
            if args.bracket_floor is not None:  # a setting, not a method: beside the scores
                out["bracket_floor"] = args.bracket_floor
            t = Table(title=f"held-out studio pairs ({q['model']['images']} images, 384x256)")
            for c in ("method", "dE2000 mean", "dE2000 p95", "PSNR dB"):
                t.add_column(c)
            for name, m in sorted(q.items(), key=lambda kv: kv[1]["delta_e2000"]):
                t.add_row(f"{name} ({m['images']} items)" if name.startswith("model,") else name,
                          f"{m['delta_e2000']:.2f}", f"{m['delta_e2000_p95']:.2f}", f"{m['psnr']:.2f}")
            console.print(t)
        if not args.skip_finetune:
            ftr = _dataset(args.ft_train, tmp, "natural_train", 64, 3, "natural")
            ftv = _dataset(args.ft_val, tmp, "natural_val", 32, 4, "natural")
            f = finetune_part(args.model, ftr, ftv, args.ft_minutes, tmp)
            out["finetune"] = {"train": str(ftr), "val": str(ftv), **f}
            t = Table(title=f"fine-tuning on natural pairs ({args.threads} CPU threads)")
            for c in ("steps", "minutes", "held-out dE2000 before", "after", "reduction", "kept"):
                t.add_column(c)
            t.add_row(str(f["steps"]), f"{f['train_minutes']:.1f}", f"{f['heldout_before']:.2f}",
                      f"{f['heldout_after']:.2f}", f"{100 * f['reduction']:.0f} %", str(f["kept"]))
            console.print(t)
        if args.real:
            rows = real_shoot(args.model, Path(args.real), Path(args.images), tmp)
            out["real"] = rows
            t = Table(title=f"real shoot {args.real}")
            for c in ("set", "size", "frames", "seconds", "before / after"):
                t.add_column(c)
            for r in rows:
                t.add_row(str(r["set"]), str(r["size"]), str(r["frames"]), f"{r['seconds']:.2f}",
                          f"{r['before']} / {r['after']}")
            console.print(t)
    if not args.skip_throughput:
        tp = {"cpu": throughput(args.model, "cpu")}
        if torch.cuda.is_available():
            tp["cuda"] = throughput(args.model, "cuda")
        out["throughput_images_per_s_512"] = tp
        t = Table(title="training throughput, 512x512, batch 4")
        t.add_column("device")
        t.add_column("images/s")
        for k, v in tp.items():
            t.add_row(k if k != "cpu" else f"cpu ({args.threads} threads)", f"{v:.2f}")
        console.print(t)
    if args.card:
        from flambient.modelcard import update_card
        from flambient.nets.registry import resolve_model_path

        update_card(resolve_model_path(args.model).parent,
                    benchmark={k: v for k, v in out.items() if k in ("quality", "finetune", "throughput_images_per_s_512")},
                    benchmark_command=" ".join(["python benchmarks/bench_quality.py", *(argv or sys.argv[1:])]))
    dest = Path(args.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, json.dumps(out, indent=2))
    console.print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

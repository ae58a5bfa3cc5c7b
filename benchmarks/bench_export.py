"""Benchmark: onnxruntime (CPU provider) against torch (CPU) for one model at 24 MP.

Exports MODEL (default: the shipped ``default``) to a temporary folder, then times both engines
on the same random inputs:

- context: the context net on the 1 x 13 x s x s low-resolution copy;
- apply: the runner's tile plan (:func:`flambient.tiling.plan_tiles`, side ``--tile``, the
  family's overlap) over a ``--height`` x ``--width`` image (default 4000 x 6000 = 24 MP).
  Each distinct tile shape is timed on one random tile at its real position, and its time
  counted once per tile of that shape (an evened plan has one to four shapes); the 24 MP x 13
  stack itself (1.2 GB) is not needed to time the nets.

With ``--real DIR`` (default: ``bench_real.DEFAULT_DATA``, ``../shared/data``, when present;
``--real ''`` skips it) both
engines also run the whole ``process`` inference path (:func:`flambient.inference.infer_image`,
tiles of ``--tile``) on every real flash set there (``bench_real.load_flash_sets``: the flambient
shoot, the frobisher bracket, FAID and phone pairs, long edge ``--real-side``), and the table
gives the largest difference of their finals and the share of 8-bit values that differ: random
inputs rarely reach the clipped pixels where the frame merge, its caps and the guards act.

Every measurement is repeated ``--repeat`` times with the two engines interleaved (order
alternating), and the table reports the MINIMUM (the least disturbed run: this is meant to
run on shared machines) next to the median. Both engines get the same thread count
(``--threads``, default: the CPUs this process may use). Prints a rich table and writes JSON
(``--json``, default benchmarks/results/export.json).

Usage: ``python benchmarks/bench_export.py [--model default] [--tile 1024] [--repeat 5] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flambient.export import export_model, random_stack
from flambient.io.atomic import atomic_write_text
from flambient.log import console
from flambient.nets.registry import load_model
from flambient.onnx_backend import OnnxBackend, default_threads
from flambient.tiling import plan_tiles

ENGINES = ("torch", "onnxruntime")


def time_pair(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Seconds of ``repeat`` runs of each engine's ``fn``, interleaved (order alternates each round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
    return times


def _as_8bit(srgb: np.ndarray) -> np.ndarray:
    """The 8-bit code values (float array) a final in [0, 1] is written with."""
    return np.round(np.clip(srgb, 0.0, 1.0) * 255.0)


def real_parity(model: str, onnx: OnnxBackend, data: Path, side: int, tile: int) -> list[dict[str, Any]]:
    """Finals of both engines on every real flash set in ``data`` (long edge ``side`` px, the
    ``process`` inference path with tiles of ``tile`` px): per set, the largest absolute
    difference (sRGB, [0, 1]) and the share of 8-bit values that differ."""
    from bench_real import load_flash_sets

    from flambient.inference import infer_image, load_backend

    torch_backend = load_backend(model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="flambient-bench-export-real-") as tmp:
        for fs in load_flash_sets(data, side, Path(tmp)):
            a = infer_image(torch_backend, fs.stack, tile=tile)
            b = infer_image(onnx, fs.stack, tile=tile)
            rows.append({"set": fs.name, "size": f"{fs.stack.shape[1]}x{fs.stack.shape[0]}",
                         "max_abs_diff": float(np.abs(a - b).max()),
                         "share_8bit_differ": float((_as_8bit(a) != _as_8bit(b)).mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (min and median reported)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fp16", action="store_true", help="benchmark an fp16 export (onnxruntime only)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "export.json")
    from bench_real import DEFAULT_DATA  # the shared real data (FLAMBIENT_SHARED_DATA overrides)

    ap.add_argument("--real", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else "",
                    help="real data folder for the parity of finals on real flash sets ('' to skip)")
    ap.add_argument("--real-side", type=int, default=1280, help="long edge of the real sets (px)")
    args = ap.parse_args(argv)

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    net, _meta = load_model(args.model)
    spec = net.spec
    rng = np.random.default_rng(0)
    mp = args.height * args.width / 1e6
    ctx_min: dict[str, float] = {}
    ctx_med: dict[str, float] = {}
    apply_min = {k: 0.0 for k in ENGINES}
    apply_med = {k: 0.0 for k in ENGINES}
    max_err = 0.0
    with tempfile.TemporaryDirectory(prefix="flambient-bench-export-") as tmp, torch.inference_mode():
        res = export_model(args.model, Path(tmp) / "model.onnx", fp16=args.fp16, seed=0)
        backend = OnnxBackend(res.onnx_path, device="cpu", threads=threads)

        s = spec.context_size
        low = random_stack(1, s, s, rng)
        low_t = torch.from_numpy(low)
        ctx_t = net.context(low_t)
        ctx_o = backend.context(low)
        t = time_pair({"torch": lambda: net.context(low_t), "onnxruntime": lambda: backend.context(low)},
                      args.repeat)
        ctx_min = {k: min(v) for k, v in t.items()}
        ctx_med = {k: statistics.median(v) for k, v in t.items()}

        plan = list(plan_tiles(args.height, args.width, args.tile, spec.overlap, max(1, spec.size_multiple)))
        shapes = Counter((p.h, p.w) for p in plan)
        for (h, w), count in shapes.items():
            first = next(p for p in plan if (p.h, p.w) == (h, w))
            x = random_stack(1, h, w, rng)
            pos = np.array([first.y0, first.x0, args.height, args.width], np.float32)
            xt, pos_t = torch.from_numpy(x), torch.from_numpy(pos)
            y_t = net.apply(xt, ctx_t, pos_t).numpy()
            y_o = backend.apply(x, ctx_o, pos)
            max_err = max(max_err, float(np.abs(y_o - y_t).max()))
            t = time_pair({"torch": lambda: net.apply(xt, ctx_t, pos_t),
                           "onnxruntime": lambda: backend.apply(x, ctx_o, pos)}, args.repeat)
            for k, v in t.items():
                apply_min[k] += count * min(v)
                apply_med[k] += count * statistics.median(v)
        real = real_parity(args.model, backend, Path(args.real), args.real_side, args.tile) if args.real else []

    rows = {k: {"context_ms_min": ctx_min[k] * 1e3, "context_ms_median": ctx_med[k] * 1e3,
                "apply_s_min": apply_min[k], "apply_s_median": apply_med[k], "mp_per_s": mp / apply_min[k]}
            for k in ENGINES}

    from rich.table import Table

    table = Table(title=f"{spec.family} '{args.model}' at {mp:.1f} MP, {len(plan)} tiles of <= {args.tile} px, "
                        f"{threads} threads, CPU{' (onnx fp16)' if args.fp16 else ''}; min (median) of {args.repeat}")
    for col in ("engine", "context (ms)", f"apply {mp:.0f} MP (s)", "MP/s", "speed-up"):
        table.add_column(col, justify="right")
    base = rows["torch"]["apply_s_min"]
    for name, r in rows.items():
        table.add_row(name, f"{r['context_ms_min']:.1f} ({r['context_ms_median']:.1f})",
                      f"{r['apply_s_min']:.2f} ({r['apply_s_median']:.2f})", f"{r['mp_per_s']:.2f}",
                      f"{base / r['apply_s_min']:.2f}x")
    console.print(table)
    console.print(f"max abs difference of the outputs: {max_err:.2e}; export parity {res.parity.max_abs:.2e}")
    if real:
        rt = Table(title=f"finals of both engines on {len(real)} real flash sets ({args.real}, long edge {args.real_side})")
        for col in ("set", "size", "max abs difference", "8-bit values that differ"):
            rt.add_column(col, justify="right")
        for r in real:
            rt.add_row(r["set"], r["size"], f"{r['max_abs_diff']:.2e}", f"{100 * r['share_8bit_differ']:.4f} %")
        console.print(rt)
    result: dict[str, Any] = {
        "benchmark": "export", "model": args.model, "family": spec.family, "height": args.height,
        "width": args.width, "megapixels": mp, "tile": args.tile, "tiles": len(plan),
        "tile_shapes": {f"{h}x{w}": n for (h, w), n in shapes.items()}, "repeat": args.repeat,
        "statistic": "min and median over interleaved repeats", "threads": threads, "fp16": args.fp16,
        "engines": rows, "max_abs_diff": max_err, "real_parity": real,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "processor": platform.processor()},
    }
    try:
        import onnxruntime

        result["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    from flambient.errors import FlambientError

    try:
        sys.exit(main())
    except FlambientError as exc:  # e.g. no shipped default model yet: say so in one line
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(exc.exit_code)

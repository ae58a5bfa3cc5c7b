"""Benchmark: onnxruntime (CPU provider) against torch (CPU) for one model at 24 MP.

Exports MODEL (default: the shipped ``default``) to a temporary folder, then times both engines
on the same random stack:

- context: the context net on the N x 13 x s x s low-resolution copy (median of ``--repeat``);
- apply: every tile of the runner's tile plan (:func:`flambient.tiling.plan_tiles`, side
  ``--tile``, the family's overlap) over a ``--height`` x ``--width`` image (default
  4000 x 6000 = 24 MP), summed; each distinct tile shape gets one random tile reused (the
  24 MP x 13 stack itself would take 1.2 GB and is not needed to time the nets).

``--max-tiles K`` times only the first K tiles and scales by the pixel share they cover (said
so in the table). Both engines get the same thread count (``--threads``, default: the CPUs
this process may use). Prints a rich table and writes JSON (``--json``, default
benchmarks/results/export.json).

Usage: ``python benchmarks/bench_export.py [--model default] [--tile 1024] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flambient.export import export_model, random_stack
from flambient.io.atomic import atomic_write_text
from flambient.log import console
from flambient.nets.registry import load_model
from flambient.onnx_backend import OnnxBackend, default_threads
from flambient.tiling import plan_tiles


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--max-tiles", type=int, default=0, help="time only this many tiles and extrapolate (0: all)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of the context net (median)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fp16", action="store_true", help="benchmark an fp16 export (onnxruntime only)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "export.json")
    args = ap.parse_args(argv)

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    net, meta = load_model(args.model)
    spec = net.spec
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="flambient-bench-export-") as tmp:
        res = export_model(args.model, Path(tmp) / "model.onnx", fp16=args.fp16, seed=0)
        backend = OnnxBackend(res.onnx_path, device="cpu", threads=threads)

        s = spec.context_size
        low = random_stack(1, s, s, rng)
        low_t = torch.from_numpy(low)
        with torch.inference_mode():
            ctx_t = net.context(low_t)
            t_ctx_torch = _median_time(lambda: net.context(low_t), args.repeat)
        ctx_o = backend.context(low)
        t_ctx_onnx = _median_time(lambda: backend.context(low), args.repeat)

        tp = plan_tiles(args.height, args.width, args.tile, spec.overlap, max(1, spec.size_multiple))
        plan = [(t.y0, t.x0, t.h, t.w) for t in tp]
        timed = plan[: args.max_tiles] if args.max_tiles else plan
        tiles: dict[tuple[int, int], np.ndarray] = {}
        t_apply = {"torch": 0.0, "onnxruntime": 0.0}
        max_err = 0.0
        with torch.inference_mode():
            for y0, x0, h, w in timed:
                x = tiles.setdefault((h, w), random_stack(1, h, w, rng))
                pos = np.array([y0, x0, args.height, args.width], np.float32)
                xt, post = torch.from_numpy(x), torch.from_numpy(pos)
                t = time.perf_counter()
                y_t = net.apply(xt, ctx_t, post)
                t_apply["torch"] += time.perf_counter() - t
                t = time.perf_counter()
                y_o = backend.apply(x, ctx_o, pos)
                t_apply["onnxruntime"] += time.perf_counter() - t
                max_err = max(max_err, float(np.abs(y_o - y_t.numpy()).max()))
    px_all = sum(h * w for _, _, h, w in plan)
    px_timed = sum(h * w for _, _, h, w in timed)
    scale = px_all / px_timed
    mp = args.height * args.width / 1e6
    rows = {
        "torch": {"context_ms": t_ctx_torch * 1e3, "apply_s": t_apply["torch"] * scale},
        "onnxruntime": {"context_ms": t_ctx_onnx * 1e3, "apply_s": t_apply["onnxruntime"] * scale},
    }
    for r in rows.values():
        r["mp_per_s"] = mp / r["apply_s"]

    from rich.table import Table

    extrap = f", {len(timed)}/{len(plan)} tiles timed, extrapolated" if len(timed) < len(plan) else ""
    table = Table(title=f"{spec.family} '{args.model}' at {mp:.1f} MP, tile {args.tile}, {threads} threads, "
                        f"CPU{' (onnx fp16)' if args.fp16 else ''}{extrap}")
    for col in ("engine", "context (ms)", f"apply {mp:.0f} MP (s)", "MP/s", "speed-up"):
        table.add_column(col, justify="right")
    base = rows["torch"]["apply_s"]
    for name, r in rows.items():
        table.add_row(name, f"{r['context_ms']:.1f}", f"{r['apply_s']:.2f}", f"{r['mp_per_s']:.2f}",
                      f"{base / r['apply_s']:.2f}x")
    console.print(table)
    console.print(f"max abs difference of the outputs: {max_err:.2e}; export parity {res.parity.max_abs:.2e}")
    result = {
        "benchmark": "export", "model": args.model, "family": spec.family, "height": args.height,
        "width": args.width, "megapixels": mp, "tile": args.tile, "tiles": len(plan), "tiles_timed": len(timed),
        "threads": threads, "fp16": args.fp16, "engines": rows, "max_abs_diff": max_err,
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
    sys.exit(main())

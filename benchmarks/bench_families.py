"""Benchmark: size and CPU speed of every registered model family (untrained weights).

For each family and each of ``--threads`` (torch CPU thread counts, default 1 and 2), fp32:

- parameters (all, and those of the context branch);
- context: one ``context(low)`` on the N=1 x 13 x s x s low-resolution copy (s = the family's
  context_size), milliseconds;
- apply: ``apply`` on one ``--tile`` x ``--tile`` tile of a random stack inside a 24 MP image
  (pos set accordingly), reported as seconds per megapixel (min and median of ``--repeat``
  runs; the min is the better estimate on a shared machine) and as process CPU seconds per
  megapixel (min; with one thread it is the least sensitive to other processes).

Speed does not depend on the weights' values, so untrained nets are timed. Prints a rich table
and writes JSON (``--json``, default benchmarks/results/families.json).
Usage: ``python benchmarks/bench_families.py [--tile 1024] [--repeat 3] [--families bilateral,lut]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.table import Table

from flambient.io.atomic import atomic_write_text
from flambient.log import console
from flambient.nets.registry import create_model, downsample, families

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "families.json"


def _time(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeat`` calls (after one warm-up call)."""
    fn()  # warm-up (allocations, first-call overheads)
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def bench_family(name: str, tile: int, repeat: int) -> dict:
    """Measure one family; returns a JSON-ready dict."""
    torch.manual_seed(0)
    net = create_model(name).eval()
    spec = net.spec
    side = max(spec.size_multiple, tile // spec.size_multiple * spec.size_multiple)
    x = torch.rand(1, spec.in_channels, side, side)
    x[:, 3:6] *= 2.0
    x[:, 10] = 1.0
    low = downsample(torch.rand(1, spec.in_channels, 512, 512), spec.context_size)
    pos = torch.tensor([1000.0, 2000.0, 4000.0, 6000.0])
    with torch.inference_mode():
        ctx = net.context(low)
        t_ctx, _ = _time(lambda: net.context(low), repeat)
        t_app, c_app = _time(lambda: net.apply(x, ctx, pos), repeat)
    mp = side * side / 1e6
    return {
        "family": name,
        "params": sum(p.numel() for p in net.parameters()),
        "context_params": sum(p.numel() for p in net.context_parameters()),
        "context_size": spec.context_size,
        "context_ms_median": 1000 * statistics.median(t_ctx),
        "tile": side,
        "apply_s_per_mp_min": min(t_app) / mp,
        "apply_s_per_mp_median": statistics.median(t_app) / mp,
        "apply_cpu_s_per_mp_min": min(c_app) / mp,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to time")
    ap.add_argument("--families", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    names = [n for n in args.families.split(",") if n] or list(families())
    rows = []
    for threads in [int(t) for t in args.threads.split(",") if t]:
        torch.set_num_threads(threads)
        rows += [{"threads": threads, **bench_family(n, args.tile, args.repeat)} for n in names]
    table = Table(title=f"model families, torch CPU fp32, tile {args.tile}")
    for col in ("family", "threads", "params", "context params", "context ms", "apply s/MP (min)", "apply s/MP (median)", "apply CPU s/MP"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["family"], str(r["threads"]), f"{r['params']:,}", f"{r['context_params']:,}",
                      f"{r['context_ms_median']:.0f}", f"{r['apply_s_per_mp_min']:.3f}", f"{r['apply_s_per_mp_median']:.3f}",
                      f"{r['apply_cpu_s_per_mp_min']:.3f}")
    console.print(table)
    console.print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    payload = {
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "tile": args.tile,
        "repeat": args.repeat,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_average_1min_at_end": os.getloadavg()[0],  # other processes share the cores
        "python": sys.version.split()[0],
        "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: ``ingest`` + ``load_set_stack`` against bare ``rawpy.postprocess`` on DNG bracket sets.

Writes ``--sets`` bracket sets of three frames (ambient, flash, window pull) as uncompressed
DNGs of ``--mp`` megapixels with :func:`flambient.io.dng.write_dng` (EXIF included), then
times on the same thread count (``--jobs``, default all cores):

- ``bare``: ``rawpy.postprocess`` of every file (the decode everything else pays for);
- ``ingest``: :func:`flambient.ingest.ingest_shoot` (EXIF, mosaic previews, grouping, labels,
  registration, manifest); ``load_set_stack`` of every set (full decode, normalisation,
  alignment, 13-channel stack); their sum is what ``process`` pays on a fresh shoot;
- ``ingest --cache``: ingest that also writes the half-float EXR cache, and
  ``load_set_stack (cached)`` reading that cache.

Overhead = time / bare - 1, on wall time and on this process's CPU time (steadier when other
jobs share the machine). Prints a rich table and writes JSON (``--json``, default
benchmarks/results/ingest.json). Usage: ``python benchmarks/bench_ingest.py [--mp 24] [--sets 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from flambient.colour import XYZ_TO_RGB
from flambient.io.atomic import atomic_write_text
from flambient.io.dng import write_dng
from flambient.log import console

BLACK, WHITE = 512, 16383
SENS = np.array([0.55, 1.0, 0.7])


def make_shoot(folder: Path, sets: int, mp: float, seed: int = 0) -> list[Path]:
    """Write ``sets`` x 3 DNG frames of about ``mp`` megapixels (3:2); returns the paths."""
    import cv2

    w = int(round(np.sqrt(mp * 1e6 * 1.5) / 2) * 2)
    h = int(round(w / 1.5 / 2) * 2)
    rng = np.random.default_rng(seed)
    t = datetime(2024, 6, 1, 14, 0, 0)
    paths = []
    for s in range(sets):
        base = cv2.resize(rng.random((h // 64, w // 64, 3)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
        scene = np.clip(0.05 + 0.6 * base, 0.02, 0.7)
        for k, (expo, flash, gain) in enumerate(((1 / 8, False, 1.0), (1 / 125, True, 0.8), (1 / 32, False, 0.25))):
            cam = scene * gain * SENS
            cfa = np.empty((h, w), np.float32)
            cfa[0::2, 0::2] = cam[0::2, 0::2, 0]
            cfa[0::2, 1::2] = cam[0::2, 1::2, 1]
            cfa[1::2, 0::2] = cam[1::2, 0::2, 1]
            cfa[1::2, 1::2] = cam[1::2, 1::2, 2]
            mosaic = (BLACK + np.clip(cfa, 0, 1) * (WHITE - BLACK)).astype(np.uint16)
            p = folder / f"DSC_{s * 3 + k + 1:04d}.dng"
            write_dng(p, mosaic, black_level=BLACK, white_level=WHITE, color_matrix=np.diag(SENS) @ XYZ_TO_RGB,
                      as_shot_neutral=SENS / SENS.max(), make="Bench", model="Cam",
                      exif={"ExposureTime": expo, "FNumber": 8.0, "ISO": 100, "DateTimeOriginal": t,
                            "Flash": flash, "FocalLength": 16.0})
            paths.append(p)
            t += timedelta(seconds=30)
    return paths


def _timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of ``fn()``; CPU time is steadier on a busy machine."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bare_decode(paths: list[Path], jobs: int) -> None:
    """``rawpy.postprocess`` every file (linear 16-bit, as ingest asks) on ``jobs`` threads."""
    import rawpy
    from joblib import Parallel, delayed

    def one(p: Path) -> tuple[int, ...]:
        with rawpy.imread(str(p)) as raw:
            rgb = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                                  output_color=rawpy.ColorSpace.sRGB, adjust_maximum_thr=0.0)
        return rgb.shape

    Parallel(n_jobs=jobs, prefer="threads")(delayed(one)(p) for p in paths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp", type=float, default=24.0, help="megapixels per frame")
    ap.add_argument("--sets", type=int, default=2, help="bracket sets of 3 frames")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1))
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement (best is kept)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/ingest.json"))
    args = ap.parse_args(argv)

    from flambient.ingest import ingest_shoot, load_set_stack

    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        paths = make_shoot(tmp, args.sets, args.mp)
        n = len(paths)
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in ("bare", "ingest", "load", "cache", "cached")}
        state: dict = {}
        for _ in range(args.repeat):
            runs["bare"].append(_timed(lambda: bare_decode(paths, args.jobs)))
            shutil.rmtree(tmp / ".flambient", ignore_errors=True)
            runs["ingest"].append(_timed(lambda: state.update(m=ingest_shoot(tmp, n_jobs=args.jobs))))
            runs["load"].append(_timed(lambda: [load_set_stack(tmp, s, use_cache=False, n_jobs=args.jobs)
                                                for s in state["m"].sets]))
            runs["cache"].append(_timed(lambda: state.update(m=ingest_shoot(tmp, cache=True, n_jobs=args.jobs))))
            runs["cached"].append(_timed(lambda: [load_set_stack(tmp, s, use_cache=True, n_jobs=args.jobs)
                                                  for s in state["m"].sets]))
        m = state["m"]
        assert len(m.sets) == args.sets and all(len(s.frames) == 3 for s in m.sets)
        h, w = m.sets[0].frames[0].height, m.sets[0].frames[0].width
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {k: (min(v[0] for v in r), min(v[1] for v in r)) for k, r in runs.items()}
    best["ingest+load"] = (best["ingest"][0] + best["load"][0], best["ingest"][1] + best["load"][1])
    labels = {"bare": "bare rawpy.postprocess", "ingest": "ingest", "load": "load_set_stack",
              "ingest+load": "ingest + load_set_stack", "cache": "ingest --cache", "cached": "load_set_stack (cached)"}
    bw, bc = best["bare"]
    from rich.table import Table

    table = Table(title=f"ingest vs bare decode: {n} DNG frames of {w}x{h} ({w * h / 1e6:.1f} MP), "
                        f"{args.jobs} thread(s), best of {args.repeat}")
    for col in ("what", "wall s", "CPU s", "frames/s", "vs bare (wall)", "vs bare (CPU)"):
        table.add_column(col)
    result = {"frames": n, "width": w, "height": h, "megapixels": round(w * h / 1e6, 2), "jobs": args.jobs,
              "repeat": args.repeat, "machine": platform.processor() or platform.machine(),
              "python": sys.version.split()[0], "rows": []}
    for key in ("bare", "ingest", "load", "ingest+load", "cache", "cached"):
        sw, sc = best[key]
        table.add_row(labels[key], f"{sw:.2f}", f"{sc:.2f}", f"{n / sw:.2f}", f"{sw / bw - 1:+.1%}", f"{sc / bc - 1:+.1%}")
        result["rows"].append({"what": labels[key], "wall_s": round(sw, 3), "cpu_s": round(sc, 3),
                               "frames_per_s": round(n / sw, 3), "overhead_wall": round(sw / bw - 1, 4),
                               "overhead_cpu": round(sc / bc - 1, 4)})
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

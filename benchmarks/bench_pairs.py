"""Benchmark: what building a fine-tune's dataset from full-size pairs costs (``ingest --pairs``).

``flambient finetune --pairs DIR`` first builds a temporary dataset from DIR. A studio's pairs
are full-size exports (24-60 MP JPEGs); the fine-tune never reads more than a long edge of
``finetune.build_side`` (384 px by default). This benchmark writes ``--pairs`` single-image
pairs (``NAME_src.jpg`` / ``NAME_edited.jpg``) of ``--mp`` megapixels made from a real
photograph of ``../shared/data`` (a FiveK input, upscaled, with sensor-like noise so the JPEGs
carry real-size data), and times :func:`flambient.pairs.ingest_pairs`:

- ``full size`` (``max_side=0``, what ``ingest --pairs`` writes by default, and what the
  fine-tune built before this benchmark): half-float EXR + 16-bit PNG per pair at full size;
- ``max_side`` = ``finetune.build_side`` (what the fine-tune builds now): JPEGs decoded with
  the decoder's DCT downscaling, then an area shrink in linear light.

Reports seconds per pair (wall, ``--jobs`` workers), megabytes written per pair, and both
extrapolated to 577 pairs (the README's studio). Prints a table and writes JSON (``--out-json``,
default benchmarks/results/pairs.json). Usage: ``python benchmarks/bench_pairs.py [--mp 24] [--pairs 4]``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_real  # noqa: E402  (benchmarks/ is not a package)

REPO = Path(__file__).resolve().parents[1]
#: The studio size the README quotes (``flambient finetune --pairs ./577pairs``).
STUDIO_PAIRS = 577


def write_pairs(folder: Path, photo: Path, n: int, mp: float, seed: int = 0) -> tuple[int, int]:
    """Write ``n`` JPEG pairs of about ``mp`` megapixels (3:2) into ``folder``; returns (H, W).

    The source is ``photo`` upscaled with per-pair noise (sigma 3/255); the edit is a brighter,
    warmer version of it (a global edit; its content does not change the cost)."""
    import cv2

    from flambient.io.images import read_srgb, write_jpeg

    w = int(round(np.sqrt(mp * 1e6 * 1.5)))
    h = int(round(w / 1.5))
    base = cv2.resize(read_srgb(photo), (w, h), interpolation=cv2.INTER_CUBIC)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise = np.random.default_rng([seed, i]).normal(0.0, 3.0 / 255.0, base.shape).astype(np.float32)
        src = np.clip(base + noise, 0.0, 1.0)
        write_jpeg(folder / f"room{i:03d}_src.jpg", src, quality=92)
        write_jpeg(folder / f"room{i:03d}_edited.jpg", np.clip(src ** 0.8 * [1.04, 1.0, 0.94], 0.0, 1.0), quality=92)
    return h, w


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def time_build(pairs: Path, out: Path, max_side: int, jobs: int) -> dict[str, float]:
    """Seconds and megabytes per pair of one :func:`ingest_pairs` run (``out`` removed after)."""
    from flambient.pairs import ingest_pairs

    t0 = time.perf_counter()
    res = ingest_pairs(pairs, out, n_jobs=jobs, max_side=max_side)
    seconds = time.perf_counter() - t0
    n = max(1, len(res.items))
    row = {"max_side": max_side, "items": len(res.items), "errors": len(res.errors),
           "s_per_pair": seconds / n, "mb_per_pair": _folder_mb(out) / n}
    row[f"minutes_for_{STUDIO_PAIRS}"] = row["s_per_pair"] * STUDIO_PAIRS / 60.0
    row[f"gb_for_{STUDIO_PAIRS}"] = row["mb_per_pair"] * STUDIO_PAIRS / 1e3
    shutil.rmtree(out, ignore_errors=True)
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(bench_real.DEFAULT_DATA), help="the shared real data folder")
    ap.add_argument("--mp", type=float, default=24.0, help="megapixels per image (default 24)")
    ap.add_argument("--pairs", type=int, default=4, help="pairs to write and build (default 4)")
    ap.add_argument("--jobs", type=int, default=2, help="ingest workers (default 2)")
    ap.add_argument("--out-json", default=str(REPO / "benchmarks" / "results" / "pairs.json"))
    return ap.parse_args(argv)


def run(args: argparse.Namespace, log: Any = bench_real._progress) -> dict[str, Any]:
    """The benchmark; returns the JSON document (also written to ``args.out_json``)."""
    from flambient.training.finetune import build_side, finetune_config

    t0 = time.perf_counter()
    photo = sorted((Path(args.data) / "fivek-pairs-deeplpf").glob("*_input.png"))[0]
    side = build_side(finetune_config())
    with tempfile.TemporaryDirectory(prefix="flambient-bench-pairs-") as td:
        pairs = Path(td) / "pairs"
        h, w = write_pairs(pairs, photo, args.pairs, args.mp)
        log(f"{args.pairs} pairs of {w}x{h} from {photo.name}")
        rows = {"full size": time_build(pairs, Path(td) / "full", 0, args.jobs),
                f"max_side {side} (finetune)": time_build(pairs, Path(td) / "small", side, args.jobs)}
    doc = {"pairs": args.pairs, "size": [w, h], "mp": args.mp, "jobs": args.jobs, "photo": photo.name,
           "machine": platform.processor() or platform.machine(), "builds": rows}
    return bench_real.finish(doc, t0, args.out_json, markdown)


def markdown(doc: dict[str, Any]) -> str:
    """The report's markdown table."""
    n = STUDIO_PAIRS
    lines = [f"### Building a fine-tune's dataset: {doc['pairs']} JPEG pairs of {doc['size'][0]}x{doc['size'][1]}, "
             f"{doc['jobs']} workers", "",
             f"| build | s per pair | MB per pair | {n} pairs: minutes | {n} pairs: GB |", "|---|---|---|---|---|"]
    for name, r in doc["builds"].items():
        lines.append(f"| {name} | {r['s_per_pair']:.2f} | {r['mb_per_pair']:.1f} | {r[f'minutes_for_{n}']:.1f} | "
                     f"{r[f'gb_for_{n}']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_real.run_script(args, args.data, "data", "real data", run)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark and realism check of ``flambient synth``.

Speed (median of ``--repeat`` runs, ``--workers`` threads):

- one three-frame DNG set (ambient, flash, window pull) at ``--megapixels`` (default 24 MP),
  frames and truth written, peak resident memory of the process;
- training pairs (``synth_pairs``) at 384x256 on one thread: seconds per pair.

Realism (``--realism``): renders ``--realism-sets`` (6) DNG sets at 24 MP, decodes every frame with
rawpy, exports it like a camera JPEG at 1280x852 (the size of the real shoot) and compares
with the real shoot in ``../shared/data/flambient-brackets-small-davepeloso-prophoto``:
flash/ambient median brightness ratio, colour temperature of ambient and flash frames (and
their gap), share of clipped pixels, noise (Immerkaer's estimator in 8-bit levels, over the
whole frame, where texture dominates, and in the flattest 16x16 blocks).

Prints rich tables and writes JSON (``--json``, default benchmarks/results/synth.json).
Usage: ``python benchmarks/bench_synth.py [--megapixels 24] [--workers 2] [--realism]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flambient.colour import linear_rgb_to_cct, linear_to_srgb, luminance, srgb_to_linear
from flambient.io.atomic import atomic_write_text
from flambient.io.images import read_linear, read_srgb
from flambient.log import console
from flambient.synth.shoot import SHOOT_START, parse_size, plan_set, render_set, synth_pairs

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flambient-brackets-small-davepeloso-prophoto"


def three_frame_plan(aspect: float):  # type: ignore[no-untyped-def]
    """The first set (by index) with exactly ambient + one flash + window pull."""
    for i in range(200):
        plan = plan_set(0, i, SHOOT_START, aspect, n_flash=1)
        if [f.role for f in plan.frames] == ["ambient", "flash", "window"]:
            return plan
    raise RuntimeError("no three-frame set found")


def bench_set(mp: float, workers: int, repeat: int) -> dict:
    w, h = parse_size(None, mp)
    plan = three_frame_plan(w / h)
    times, cpu = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            t, c = time.perf_counter(), time.process_time()
            render_set(plan, Path(d), ["A.dng", "B.dng", "C.dng"], (w, h), "dng", "studio", workers=workers)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"width": w, "height": h, "megapixels": round(w * h / 1e6, 2), "frames": 3, "workers": workers,
            "seconds_median": round(statistics.median(times), 3), "seconds_all": [round(x, 3) for x in times],
            "cpu_seconds_median": round(statistics.median(cpu), 3),
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "peak_rss_mb": round(peak_mb, 1)}


def bench_pairs(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        synth_pairs(d, pairs=n, size=(384, 256), seed=0, style="studio", workers=1)
        dt = time.perf_counter() - t
    return {"pairs": n, "size": [384, 256], "workers": 1, "seconds_per_pair": round(dt / n, 4)}


# ----------------------------------------------------------------------------- realism


def noise_level(srgb: np.ndarray) -> float:
    """Immerkaer (1996) noise sigma of the 8-bit luma (texture counts too; compare like with like)."""
    import cv2

    g = luminance(srgb).astype(np.float64) * 255.0
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    r = cv2.filter2D(g, -1, m)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6.0)


def flat_noise_level(srgb: np.ndarray, block: int = 16, q: float = 10.0) -> float:
    """Noise in flat regions: Immerkaer's estimate per 16x16 block, 10th percentile over blocks."""
    import cv2

    g = luminance(srgb).astype(np.float64) * 255.0
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    r = np.abs(cv2.filter2D(g, -1, m))[1:-1, 1:-1]
    h, w = r.shape
    r = r[: h // block * block, : w // block * block].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    return float(np.sqrt(np.pi / 2) * np.percentile(r, q) / 6.0)


def frame_stats(srgb: np.ndarray) -> dict:
    lin = srgb_to_linear(srgb)
    lum = luminance(lin)
    ok = (srgb.max(axis=-1) < 0.97) & (lum > 0.01)
    return {"median": float(np.median(lum)), "clipped": float((srgb.max(axis=-1) >= 0.98).mean()),
            "cct": float(linear_rgb_to_cct(lin[ok].mean(axis=0))) if ok.any() else float("nan"),
            "noise": noise_level(srgb), "flat_noise": flat_noise_level(srgb)}


def set_stats(ambient: np.ndarray, flashes: list[np.ndarray]) -> dict:
    a = frame_stats(ambient)
    fs = [frame_stats(f) for f in flashes]
    f_cct = float(np.mean([f["cct"] for f in fs]))
    return {
        "flash_ambient_ratio": float(np.mean([f["median"] for f in fs]) / a["median"]),
        "ambient_cct": a["cct"], "flash_cct": f_cct, "cct_gap": f_cct - a["cct"],
        "ambient_clipped": a["clipped"], "flash_clipped": float(np.mean([f["clipped"] for f in fs])),
        "ambient_noise": a["noise"], "flash_noise": float(np.mean([f["noise"] for f in fs])),
        "ambient_flat_noise": a["flat_noise"], "flash_flat_noise": float(np.mean([f["flat_noise"] for f in fs])),
    }


def real_sets() -> list[dict]:
    out = []
    for d in sorted(REAL.iterdir()):
        files = sorted(d.glob("*.jpg"))
        from flambient.io.exif import read_exif

        amb = [f for f in files if not read_exif(f).flash_fired]
        fl = [f for f in files if read_exif(f).flash_fired]
        out.append(set_stats(read_srgb(amb[0]), [read_srgb(f) for f in fl]))
    return out


def synthetic_sets(n: int, workers: int) -> list[dict]:
    import cv2
    import yaml

    from flambient.synth import synth_shoot

    out = []
    with tempfile.TemporaryDirectory() as d:
        synth_shoot(d, sets=n, size=(6048, 4024), seed=2026, fmt="dng", workers=workers)
        doc = yaml.safe_load((Path(d) / "truth" / "sets.yaml").read_text())

        def export(name: str) -> np.ndarray:  # camera JPEG export at the real shoot's size
            lin = read_linear(Path(d) / name)
            small = cv2.resize(lin, (1280, 852), interpolation=cv2.INTER_AREA)
            return np.round(linear_to_srgb(np.clip(small, 0, 1)) * 255) / 255

        for s in doc["sets"]:
            amb = [f["file"] for f in s["frames"] if f["role"] == "ambient"][0]
            fl = [f["file"] for f in s["frames"] if f["role"] == "flash"]
            out.append(set_stats(export(amb), [export(f) for f in fl]))
    return out


def summarise(rows: list[dict]) -> dict:
    """Per metric: [min, median, max] over sets."""
    return {k: [round(float(np.min([r[k] for r in rows])), 4), round(float(np.median([r[k] for r in rows])), 4),
                round(float(np.max([r[k] for r in rows])), 4)] for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--megapixels", type=float, default=24.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--realism", action="store_true")
    ap.add_argument("--realism-sets", type=int, default=6)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "synth.json")
    args = ap.parse_args(argv)
    from rich.table import Table

    res: dict = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                             "cpus": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg()}}
    res["set"] = bench_set(args.megapixels, args.workers, args.repeat)
    res["pairs"] = bench_pairs(args.pairs)
    t = Table(title="synth speed")
    for c in ("what", "size", "threads", "seconds", "CPU seconds", "peak RSS MB"):
        t.add_column(c)
    s = res["set"]
    t.add_row("3-frame DNG set + truth", f"{s['width']}x{s['height']} ({s['megapixels']} MP)", str(s["workers"]),
              f"{s['seconds_median']:.2f} (median of {len(s['seconds_all'])})", f"{s['cpu_seconds_median']:.2f}",
              f"{s['peak_rss_mb']:.0f}")
    p = res["pairs"]
    t.add_row("training pair", "384x256", "1", f"{p['seconds_per_pair']:.3f} per pair", "", "")
    console.print(t)
    if args.realism:
        if not REAL.is_dir():
            console.print(f"real shoot not found at {REAL}; realism skipped")
        else:
            real, syn = real_sets(), synthetic_sets(args.realism_sets, args.workers)
            res["realism"] = {"real": summarise(real), "synthetic": summarise(syn), "real_sets": real,
                              "synthetic_sets": syn}
            t = Table(title="realism: real shoot vs synthetic (min / median / max over sets)")
            for c in ("metric", "real", "synthetic"):
                t.add_column(c)
            for k in real[0]:
                r, y = res["realism"]["real"][k], res["realism"]["synthetic"][k]
                t.add_row(k, " / ".join(f"{v:.3g}" for v in r), " / ".join(f"{v:.3g}" for v in y))
            console.print(t)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(res, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

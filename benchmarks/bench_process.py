"""Benchmark `flambient process` on a synthetic RAW shoot (CPU unless a GPU is present).

Measures, on a synthetic three-frame DNG shoot (default 24 MP, 6000 x 4000):

- end-to-end seconds per set through :func:`flambient.process.process_shoot` (ingest excluded):
  the wall time of the whole batch (``--sets``, default 12: decode of the next set overlaps
  the model, as in a real shoot of 20-40 rooms) divided by the number of sets, plus the CPU
  time per set and the decode / context / apply / encode split from the sidecars; and the
  latency of one set processed alone;
- bare rawpy decoding of the same frames (``rawpy.imread(...).postprocess`` with the project's
  linear settings, one frame after the other), per set on average;
- OpenCV Mertens exposure fusion of the first set's (decoded) frames (``flambient.baselines``);
- tiling overhead: model time with the default 1024 px tiles vs one whole-image pass (each the
  least of ``--repeats`` runs, default 3);
- with ``--memory-mp N``: peak RSS (VmHWM) of a separate ``process`` run on an N MP
  three-frame set, on the CPU (``--memory-only`` runs just this and updates the JSON).

Prints a rich table and writes JSON (``--json``, default benchmarks/results/process.json).
Model: the shipped ``default`` when present, else an untrained ``bilateral`` (same compute).

    nice -n 10 python benchmarks/bench_process.py --mp 24 --memory-mp 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _size(mp: float) -> tuple[int, int]:
    """(width, height) of a 3:2 frame of about ``mp`` megapixels (even sides)."""
    h = int((mp * 1e6 / 1.5) ** 0.5) // 2 * 2
    return int(h * 1.5) // 2 * 2, h


def _model(tmp: Path) -> tuple[str, str]:
    from flambient.errors import ModelError
    from flambient.nets.registry import create_model, resolve_model_path, save_model

    try:
        resolve_model_path("default")
        return "default", "shipped default"
    except ModelError:
        d = tmp / "bilateral-untrained"
        save_model(create_model("bilateral"), d)
        return str(d), "untrained bilateral (no shipped default yet)"


def _bare_decode(paths: list[Path]) -> tuple[float, list[Any]]:
    import numpy as np
    import rawpy

    t0 = time.perf_counter()
    frames = []
    for p in paths:
        with rawpy.imread(str(p)) as raw:
            rgb = raw.postprocess(gamma=(1.0, 1.0), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                                  output_color=rawpy.ColorSpace.sRGB, adjust_maximum_thr=0.0)
        frames.append(rgb)
    dt = time.perf_counter() - t0
    return dt, [f.astype(np.float32) / 65535.0 for f in frames]


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _mertens(frames: list[Any]) -> float:
    from flambient.baselines import mertens_fusion

    t0 = time.perf_counter()
    mertens_fusion(frames)
    return time.perf_counter() - t0


def _tiling_overhead(shoot: Path, model: str, tile: int, repeats: int) -> dict[str, float]:
    """Model seconds (context + apply, incl. tile assembly) of the first set, whole image and in
    ``tile`` px tiles, each the least of ``repeats`` runs (this VM's speed swings by tens of %
    between runs; the least is the figure that compares across versions)."""
    from flambient.inference import PartsStack, infer_image, load_backend
    from flambient.ingest import load_manifest, load_set_parts

    m = load_manifest(shoot)
    assert m is not None
    parts = load_set_parts(shoot, m.sets[0], n_jobs=1)
    backend = load_backend(model, device="cpu")
    src = PartsStack(*parts)
    out: dict[str, float] = {}
    for name, t in (("whole", None), ("tiled", tile)):
        runs = []
        for _ in range(max(1, repeats)):
            tm: dict[str, float] = {}
            infer_image(backend, src, tile=t, timings=tm)
            runs.append(tm["context"] + tm["apply"])
        out[name] = min(runs)
    out["overhead_pct"] = 100.0 * (out["tiled"] / out["whole"] - 1.0)
    return out


def _peak_rss_mib() -> float:
    """This process's peak RSS in MiB: VmHWM (per address space, so not inherited from a parent
    that spawned us, unlike ``ru_maxrss`` after vfork+exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _memory_child(shoot: str, model: str) -> None:
    """Child mode: process one shoot on the CPU and print the timings and peak RSS as JSON."""
    from flambient.config import load_preset
    from flambient.process import ProcessOptions, process_shoot

    s = process_shoot(shoot, ProcessOptions(preset=load_preset("studio"), model=model, devices="cpu"))
    timings = s.results[0].timings if s.results else {}
    print(json.dumps({"exit": s.exit_code, "rss_mib": _peak_rss_mib(), "timings": timings}))


def _memory_run(mp: float, tmp: Path, model: str) -> dict[str, Any]:
    from flambient.ingest import ingest_shoot
    from flambient.synth import synth_shoot

    shoot = tmp / f"mem{mp:g}"
    synth_shoot(shoot, sets=1, size=_size(mp), seed=1, fmt="dng")
    ingest_shoot(shoot)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child-memory", str(shoot), model],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    rss = float(child["rss_mib"])
    w, h = _size(mp)
    return {"megapixels": round(w * h / 1e6, 1), "peak_rss_mib": round(rss, 1), "wall_s": round(wall, 2),
            "timings": child["timings"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp", type=float, default=24.0, help="megapixels of the synthetic frames")
    ap.add_argument("--sets", type=int, default=12, help="sets in the shoot (the batch overlaps decode and compute)")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="runs of the model-time measurement (the least is kept)")
    ap.add_argument("--memory-mp", type=float, default=0.0, help="also measure peak RSS on an N MP set")
    ap.add_argument("--memory-only", action="store_true", help="only the --memory-mp measurement")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "process.json")
    ap.add_argument("--child-memory", nargs=2, metavar=("SHOOT", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        _memory_child(*args.child_memory)
        return
    if args.memory_only:  # measure memory alone and update the "memory" entry of --json
        with tempfile.TemporaryDirectory(prefix="bench_process_") as td:
            model, _ = _model(Path(td))
            mem = _memory_run(args.memory_mp or 60.0, Path(td), model)
        print(json.dumps(mem, indent=2))
        doc = json.loads(args.json.read_text()) if args.json.is_file() else {}
        doc["memory"] = mem
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        return

    from rich.console import Console
    from rich.table import Table

    from flambient.config import load_preset
    from flambient.ingest import ingest_shoot
    from flambient.process import ProcessOptions, process_shoot
    from flambient.synth import synth_shoot

    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench_process_") as td:
        tmp = Path(td)
        model, model_note = _model(tmp)
        shoot = tmp / "shoot"
        w, h = _size(args.mp)
        t0 = time.perf_counter()
        synth_shoot(shoot, sets=args.sets, size=(w, h), seed=0, fmt="dng")
        console.print(f"synthetic shoot {args.sets} set(s) of {w}x{h} in {time.perf_counter() - t0:.1f} s")
        manifest = ingest_shoot(shoot)
        frames = [f.path for f in manifest.sets[0].frames]
        n_sets = len(manifest.sets)

        # Bare decode: every frame of the shoot, one after the other; per set on average.
        bare_total = 0.0
        for k, bset in enumerate(manifest.sets):
            dt, decoded = _bare_decode([f.path for f in bset.frames])
            bare_total += dt
            if k == 0:
                mertens_s = _mertens(decoded)
            del decoded
        bare_s = bare_total / n_sets

        preset = load_preset("studio")
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        summary = process_shoot(shoot, ProcessOptions(preset=preset, model=model, devices="auto"))
        batch_wall = time.perf_counter() - t0
        cpu_per_set = (_cpu_seconds() - cpu0) / n_sets
        e2e_wall = batch_wall / n_sets
        done = [r for r in summary.results if r.status == "done"]
        if len(done) != n_sets:
            raise SystemExit(f"process failed: {[r.error for r in summary.results]}")
        split = {k: sum(r.timings.get(k, 0.0) for r in done) / len(done)
                 for k in ("decode", "context", "apply", "encode", "total")}
        device = done[0].device
        t0 = time.perf_counter()  # one set alone: latency, no overlap with other sets
        alone = process_shoot(shoot, ProcessOptions(preset=preset, model=model, devices="auto", force=True,
                                                    shard=(1, n_sets)))
        latency = time.perf_counter() - t0
        assert [r.status for r in alone.results if r.status != "skipped"] == ["done"]
        tiling = _tiling_overhead(shoot, model, args.tile, args.repeats)
        memory = _memory_run(args.memory_mp, tmp, model) if args.memory_mp else None

    res: dict[str, Any] = {
        "frames": f"{n_sets} sets of {len(frames)} x {w}x{h} DNG ({w * h / 1e6:.1f} MP)",
        "model": model_note,
        "device": device,
        "cpu_count": os.cpu_count(),
        "sets": n_sets,
        "end_to_end_s_per_set": round(e2e_wall, 3),
        "one_set_alone_s": round(latency, 3),
        "process_cpu_s_per_set": round(cpu_per_set, 3),
        "split_s": {k: round(v, 3) for k, v in split.items()},
        "bare_rawpy_decode_s_per_set": round(bare_s, 3),
        "mertens_fusion_s": round(mertens_s, 3),
        "ratio_vs_bare_decode": round(e2e_wall / bare_s, 3),
        "ratio_vs_mertens": round(e2e_wall / mertens_s, 3),
        "one_set_alone_ratio_vs_bare_decode": round(latency / bare_s, 3),
        "tiling": {k: round(v, 3) for k, v in tiling.items()},
        "model_time_repeats": args.repeats,
        "memory": memory,
    }
    table = Table(title=f"process benchmark: {res['frames']}, {device}, {model_note}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"end-to-end per set (wall of the {n_sets}-set batch / {n_sets})", f"{e2e_wall:.2f} s")
    table.add_row("  process CPU time per set (all threads)", f"{cpu_per_set:.2f} s")
    for k in ("decode", "context", "apply", "encode"):
        table.add_row(f"  {k} (per set, stages overlap)", f"{split[k]:.2f} s")
    table.add_row("one set alone (latency)", f"{latency:.2f} s")
    table.add_row("bare rawpy decode per set (same frames, sequential)", f"{bare_s:.2f} s")
    table.add_row("OpenCV Mertens fusion (first set's frames)", f"{mertens_s:.2f} s")
    table.add_row("end-to-end / bare decode (target <= 1.5)", f"{res['ratio_vs_bare_decode']:.2f}")
    table.add_row("  one set alone / bare decode", f"{res['one_set_alone_ratio_vs_bare_decode']:.2f}")
    table.add_row("end-to-end / Mertens (target < 1)", f"{res['ratio_vs_mertens']:.2f}")
    table.add_row(f"model time whole image / {args.tile} px tiles (least of {args.repeats})", f"{tiling['whole']:.2f} / {tiling['tiled']:.2f} s")
    table.add_row("tiling overhead (target <= 10 %)", f"{tiling['overhead_pct']:.1f} %")
    if memory:
        table.add_row(f"peak RSS, {memory['megapixels']} MP set on CPU", f"{memory['peak_rss_mib']:.0f} MiB")
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

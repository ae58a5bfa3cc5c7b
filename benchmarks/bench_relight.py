"""Benchmark: how real are the re-lit training brackets, and does the model keep their whites?

`flambient synth --from FINALS` re-lights licensed photographs into ambient + flash brackets with
the photograph as the truth (:mod:`flambient.synth.from_finals`); the shipped default learned
its bracket tone from such pairs. This benchmark sets their ambient frames beside the ambient
frames of the 18 real flash / ambient sets of ``benchmarks/bench_real.py`` and reports, for
every variant of the generator:

- the ambient frame's statistics (linear luminance): clipped share (any channel >= 0.99), median,
  and the spread of the upper tones in stops above the median (p75, p90, p99);
- the share of pixels the generator takes for windows (and blows out in the ambient frame);
- the default model's finals: CIE L* percentiles 50 / 75 / 90 / 99 against the truth's, and mean
  CIEDE2000 to the truth. On the real sets there is no truth: their L* percentiles only.

The "greyed upper tones" of the default on real shoots (README, "On a real shoot") show up on a
re-lit set only when its ambient frames look like real ones (flat light, white walls recorded,
not blown): that is the variant to train and judge the next bracket tone on.

Usage: ``python benchmarks/bench_relight.py --finals DIR [--model default] [--seed 7]``, with
DIR the licensed photographs of ``models/default/data_sources.tsv``. Writes
benchmarks/results/relight.json (``--out-json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_real  # noqa: E402  (benchmarks/ is not a package)

#: Generator variants: name -> keyword arguments of :func:`flambient.synth.from_finals.synth_from_finals`.
VARIANTS: dict[str, dict[str, Any]] = {
    "re-lit (stages 1-4)": {},
    "re-lit, camera AWB (stage 5)": {"camera_awb": True},
    "flat ambient, camera AWB": {"camera_awb": True, "flat_ambient": True},
    "flat ambient, camera AWB, windows >= 0.96": {"camera_awb": True, "flat_ambient": True, "window_luma": 0.96},
}
PERCENTILES = (50, 75, 90, 99)


def ambient_stats(lin: np.ndarray) -> dict[str, float]:
    """Statistics of one ambient frame (HxWx3 linear RGB): ``clip`` share of pixels with a channel
    >= 0.99, ``p50`` median luminance (linear), ``up75`` / ``up90`` / ``up99`` the luminance
    percentiles in stops above the median."""
    from flambient.colour import luminance

    y = np.asarray(luminance(lin), dtype=np.float64).ravel()
    p = np.percentile(y, PERCENTILES)
    p50 = max(float(p[0]), 1e-6)
    return {"clip": float((lin.max(axis=2) >= 0.99).mean()), "p50": p50,
            **{f"up{q}": float(np.log2(max(v, 1e-6) / p50)) for q, v in zip(PERCENTILES[1:], p[1:])}}


def lstar_percentiles(srgb: np.ndarray) -> list[float]:
    """CIE L* percentiles :data:`PERCENTILES` of an sRGB image (HxWx3 in [0, 1])."""
    from flambient.colour import srgb_to_lab

    return [float(v) for v in np.percentile(srgb_to_lab(np.clip(srgb, 0.0, 1.0))[..., 0], PERCENTILES)]


def _median_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.median([r[k] for r in rows])) for k in rows[0]} if rows else {}


def _median_lists(rows: list[list[float]]) -> list[float]:
    return [float(v) for v in np.median(np.array(rows), axis=0)] if rows else []


def real_part(backend: Any, data: Path, tmp: Path) -> dict[str, Any]:
    """Ambient statistics and the model's L* percentiles on the real flash sets (medians over sets)."""
    from flambient.colour import linear_to_srgb
    from flambient.inference import predict_srgb
    from flambient.stack import AMBIENT

    sets = bench_real.load_flash_sets(data, 640, tmp)
    amb = [ambient_stats(s.stack[:, :, AMBIENT]) for s in sets]
    return {"sets": len(sets), "ambient": _median_dict(amb),
            "ambient_L": _median_lists([lstar_percentiles(linear_to_srgb(s.stack[:, :, AMBIENT])) for s in sets]),
            "model_L": _median_lists([lstar_percentiles(predict_srgb(backend, s.stack)) for s in sets])}


def variant_part(backend: Any, finals: Path, out: Path, seed: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One generator variant: re-light ``finals`` at 384 x 256 with ``seed``, then the figures."""
    from flambient import metrics
    from flambient.dataset import load_dataset
    from flambient.inference import predict_srgb
    from flambient.stack import AMBIENT, HAS_MASK, MASK
    from flambient.synth.from_finals import synth_from_finals

    synth_from_finals(finals, out, size=(384, 256), seed=seed, pairs=True, **kwargs)
    amb, truth_l, model_l, masks, de = [], [], [], [], []
    for item in load_dataset(out):
        stack, target = item.load()
        pred = predict_srgb(backend, stack)
        amb.append(ambient_stats(stack[:, :, AMBIENT]))
        masks.append(float((stack[:, :, MASK] > 0.5).mean()) if stack[0, 0, HAS_MASK] > 0.5 else 0.0)
        truth_l.append(lstar_percentiles(target))
        model_l.append(lstar_percentiles(pred))
        de.append(metrics.delta_e_stats(pred, target)[0])
    return {"items": len(de), "generator": kwargs, "ambient": _median_dict(amb), "window_share": float(np.median(masks)),
            "truth_L": _median_lists(truth_l), "model_L": _median_lists(model_l), "delta_e2000": float(np.mean(de))}


def markdown(doc: dict[str, Any]) -> str:
    """The result table (medians over images; dE2000 a mean)."""
    def pct(v: list[float]) -> str:
        return " / ".join(f"{x:.0f}" for x in v) if v else "-"

    lines = ["| ambient frames | clipped | median | p75 / p90 / p99 (stops above median) | window share | "
             "truth L* p50/75/90/99 | model L* p50/75/90/99 | dE2000 |", "|---|---|---|---|---|---|---|---|"]
    rows = [(f"real flash sets ({doc['real']['sets']})", doc["real"], None)] if "real" in doc else []
    rows += [(name, v, v) for name, v in doc["variants"].items()]
    for name, v, syn in rows:
        a = v["ambient"]
        window = truth = de = "-"
        if syn is not None:
            window, truth, de = f"{100 * syn['window_share']:.1f} %", pct(syn["truth_L"]), f"{syn['delta_e2000']:.2f}"
        lines.append(f"| {name} | {100 * a['clip']:.1f} % | {a['p50']:.3f} | {a['up75']:.2f} / {a['up90']:.2f} / "
                     f"{a['up99']:.2f} | {window} | {truth} | {pct(v['model_L'])} | {de} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--finals", required=True, help="folder of licensed photographs to re-light")
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(bench_real.DEFAULT_DATA), help="shared real data (the real flash sets)")
    ap.add_argument("--seed", type=int, default=7, help="re-lighting seed (7: held out from the default's training)")
    ap.add_argument("--out-json", default=str(bench_real.REPO / "benchmarks" / "results" / "relight.json"))
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON document (also written to ``args.out_json``)."""
    from flambient.inference import load_backend

    t0 = time.perf_counter()
    backend = load_backend(args.model)
    doc: dict[str, Any] = {"model": args.model, "finals": str(args.finals), "seed": args.seed, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="flambient-bench-relight-") as td:
        tmp = Path(td)
        if Path(args.data).is_dir():
            doc["real"] = real_part(backend, Path(args.data), tmp)
        for i, (name, kwargs) in enumerate(VARIANTS.items()):
            doc["variants"][name] = variant_part(backend, Path(args.finals), tmp / f"v{i}", args.seed, kwargs)
    return bench_real.finish(doc, t0, args.out_json, markdown)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_real.run_script(args, args.finals, "finals", "finals", run)


if __name__ == "__main__":
    sys.exit(main())

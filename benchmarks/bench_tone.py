"""Benchmark: where do a flash set's upper tones go? A step-by-step tone map on real flash sets.

The default's finals of real flash sets are flatter than finished interiors in the upper tones
(README, "A flash set's final comes at most 0.6 EV under its ambient frame": L* p90 70 against
83). This benchmark shows at which step of the ``adaptive`` family that happens. For each of
the real flash / ambient sets of ``benchmarks/bench_real.py`` it runs the model's context once
and traces the whole image through :meth:`flambient.nets.adaptive.AdaptiveNet.trace_tones`,
then reports, for bands of the ambient frame's CIE L* (10 L* wide), the median L* of the
pixels of that band after each step:

- ``merge``: the ambient frame white-balanced, its clipped pixels filled from another frame;
- ``flash``: plus the flash light (learned, image-adaptive weight);
- ``exposure``: after the white balance, colour matrix and exposure gain;
- ``local``: after the local gain grid (where the bracket exposure floor's lift lands);
- ``tone``: after the tone curve: the final's luminance.

A band counts for a set when it holds at least 0.5 % of the set's pixels; the table gives the
mean over those sets. It also prints the two learned tone curves themselves (bracket sets and
single images; L* out for L* in, at the exposed white's scale).

Usage: ``python benchmarks/bench_tone.py [--model default] [--data ../shared/data]``; about
20 s on 2 cores. Writes benchmarks/results/tone.json (``--out-json``) and prints the tables.
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

#: Lower edges of the ambient-L* bands (each 10 L* wide); the upper tones are the point.
BANDS = (20, 30, 40, 50, 60, 70, 80, 90)
#: Least share of a set's pixels for a band to count for that set.
MIN_SHARE = 0.005
#: Encoded (sRGB) inputs at which the curve table reads the learned tone curves.
CURVE_INPUTS = tuple(round(0.1 * i, 1) for i in range(11))


def lstar_of_luminance(y: np.ndarray) -> np.ndarray:
    """CIE L* (D65, 0-100) of linear luminance ``y`` (any shape, values clipped to [0, 1])."""
    from flambient.colour import lightness

    return lightness(np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0))


def band_medians(ambient_l: np.ndarray, step_l: np.ndarray, bands: tuple[int, ...] = BANDS,
                 min_share: float = MIN_SHARE) -> list[float | None]:
    """Median of ``step_l`` over the pixels whose ``ambient_l`` lies in each band
    ``[b, b + 10)`` (the last band includes 100); ``None`` where the band holds under
    ``min_share`` of the pixels. Both arrays are L* of the same pixels, any equal shape."""
    a, s = np.ravel(ambient_l), np.ravel(step_l)
    out: list[float | None] = []
    for b in bands:
        inside = (a >= b) & ((a < b + 10) if b + 10 < 100 else (a <= 100.0))
        out.append(float(np.median(s[inside])) if inside.mean() >= min_share else None)
    return out


def trace_set(net: Any, stack: np.ndarray) -> dict[str, np.ndarray]:
    """L* (HxW) of the ambient frame (key ``ambient``) and after each traced step of the model
    (:data:`flambient.nets.adaptive.TONE_STAGES`) for one HxWx13 linear stack."""
    import torch

    from flambient.colour import luminance
    from flambient.inference import ArrayStack
    from flambient.stack import AMBIENT

    x = torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 0, 1))[None]).float()
    with torch.no_grad():
        ctx = net.context(torch.from_numpy(ArrayStack(stack).low(net.spec.context_size)).float())
    steps = net.trace_tones(x, ctx)
    out = {"ambient": lstar_of_luminance(luminance(stack[:, :, AMBIENT]))}
    out.update({k: lstar_of_luminance(v[0, 0].numpy()) for k, v in steps.items()})
    return out


def curve_table(net: Any) -> dict[str, list[float]]:
    """The learned tone curves as L* out at the encoded inputs :data:`CURVE_INPUTS`
    (``input``: those inputs as L*; ``bracket``: the shared curve with its least slope over the
    view tones; ``single``: with the single-image offset), before the per-image correction."""
    import torch

    from flambient.colour import srgb_to_linear

    u = torch.tensor(CURVE_INPUTS, dtype=torch.float32).view(1, 1, 1, -1)
    out = {"input": lstar_of_luminance(srgb_to_linear(np.array(CURVE_INPUTS))).tolist()}
    with torch.no_grad():
        for name, slopes in (("bracket", net.bracket_slopes(net.curve_theta[None])),
                             ("single", net.curve_slopes((net.curve_theta + net.single_curve)[None]))):
            enc = net._curve(u, slopes)[0, 0, 0].numpy()
            out[name] = lstar_of_luminance(srgb_to_linear(enc)).tolist()
    return out


def summarise(per_set: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Mean over sets of each step's band medians (sets where the band counts), per step."""
    steps = list(per_set[0]["bands"]) if per_set else []
    out: dict[str, list[float | None]] = {}
    for step in steps:
        cols = np.array([[np.nan if v is None else v for v in s["bands"][step]] for s in per_set], dtype=float)
        out[step] = [float(np.nanmean(c)) if np.isfinite(c).any() else None for c in cols.T]
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The two tables: step-by-step tone map (mean over sets) and the learned curves."""
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    head = " | ".join(f"{b}-{b + 10}" for b in doc["bands"])
    lines = [f"| step ({doc['sets']} real flash sets), L* by ambient-L* band | {head} |",
             "|---" * (len(doc["bands"]) + 1) + "|"]
    shares = " | ".join(f"{100 * s:.0f} %" for s in doc["band_share"])
    lines.append(f"| share of pixels (mean over sets) | {shares} |")
    for step, vals in doc["summary"].items():
        lines.append(f"| {step} | " + " | ".join(cell(v) for v in vals) + " |")
    c = doc["curves"]
    lines += ["", "| learned tone curve, L* in | " + " | ".join(f"{v:.0f}" for v in c["input"]) + " |",
              "|---" * (len(c["input"]) + 1) + "|"]
    for name in ("bracket", "single"):
        lines.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in c[name]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="an adaptive-family model (name or path)")
    ap.add_argument("--data", default=str(bench_real.DEFAULT_DATA), help="shared real data (the real flash sets)")
    ap.add_argument("--max-side", type=int, default=640, help="long edge of every set (px)")
    ap.add_argument("--out-json", default=str(bench_real.REPO / "benchmarks" / "results" / "tone.json"))
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON document (also written to ``args.out_json``)."""
    from flambient.errors import ModelError
    from flambient.nets.registry import load_model

    t0 = time.perf_counter()
    net, _ = load_model(args.model)
    if not hasattr(net, "trace_tones"):
        raise ModelError(f"bench_tone traces the adaptive family only, not {net.spec.family!r}", args.model)
    with tempfile.TemporaryDirectory(prefix="flambient-bench-tone-") as td:
        sets = bench_real.load_flash_sets(Path(args.data), args.max_side, Path(td))
    per_set, shares = [], []
    for s in sets:
        lstar = trace_set(net, s.stack)
        amb = lstar.pop("ambient")
        bands = {"ambient frame": band_medians(amb, amb)}
        bands.update({k: band_medians(amb, v) for k, v in lstar.items()})
        shares.append([float(((amb >= b) & (amb < b + 10 if b + 10 < 100 else amb <= 100)).mean()) for b in BANDS])
        per_set.append({"name": s.name, "bands": bands})
    doc = {"model": str(args.model), "sets": len(per_set), "bands": list(BANDS),
           "band_share": np.mean(shares, axis=0).tolist() if shares else [0.0] * len(BANDS),
           "summary": summarise(per_set), "curves": curve_table(net), "per_set": per_set}
    return bench_real.finish(doc, t0, args.out_json, markdown)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_real.run_script(args, args.data, "data", "real data", run)


if __name__ == "__main__":
    sys.exit(main())

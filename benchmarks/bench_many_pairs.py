"""Benchmark: does ``flambient finetune`` keep improving from tens to hundreds of real pairs?

Issue 11 asks that a finetune improve with 3, 5, 10 *and* 600 pairs (``flambient finetune
--pairs ./577pairs``). No studio's 600 real edits are public, so this benchmark builds a
many-pair studio on real content: a simulated editor (:func:`flambient.looks.make_look`, seed
``--look``) applied to random crops of real photographs. Each crop is its own picture, edited
on its own (the look's exposure target and window pull see the crop, as an editor sees the
picture), sRGB in [0, 1], long edge 256-384 px.

- **Training pairs**: crops of the photographs in ``--photos DIR`` (the shipped default's
  licensed training photographs, ``models/default/data_sources.tsv``), drawn with a fixed seed
  round-robin over the photographs (crop side 45-90 % of the picture, aspect 0.8-1.25x); the
  first N crops are the N pairs, so a larger N holds every smaller one.
- **Test pairs**: the 27 real photographs of ``benchmarks/bench_real.py`` (``../shared/data``:
  FiveK inputs, the flambient shoot's ambient frames, FAID and phone ambient frames, the
  frobisher frame), whole, long edge ``--max-side``, the same look applied. None of their
  content is in the training crops.
- **Methods** on the same test pairs: ``identity``, ``base`` (the model as shipped),
  ``ten-line`` (:func:`flambient.baselines.fit_global_poly` fitted on the same N pairs) and
  ``finetuned`` (:func:`flambient.training.finetune.finetune` exactly as a user runs it: its own
  regime, budget and held-out split). ``--few-pairs K`` sets the regime threshold (default: the
  finetune's own, 40), so the two regimes can be set side by side on the same N.

A parametric editor is far easier to learn than a human one: the scores bound what the method
does on a real studio (README, "Quality on real photographs").

Usage: ``python benchmarks/bench_many_pairs.py --photos DIR [--ns 40,150,600] [--look 0]``.
Writes benchmarks/results/many_pairs.json (``--out-json``) and prints a markdown table.
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
from bench_real import Pair  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Photograph suffixes read from ``--photos``.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: Crop side as a share of the picture's, and the crop's aspect change (uniform ranges).
CROP_SHARE = (0.45, 0.9)
CROP_ASPECT = (0.8, 1.25)
#: Long edge (px) of a training crop (uniform integer range).
CROP_SIDE = (256, 385)


def crop_pairs(photos: list[tuple[str, np.ndarray]], n: int, look_seed: int, seed: int = 17) -> list[Pair]:
    """``n`` (crop, look(crop)) pairs, round-robin over ``photos`` (name, sRGB HxWx3 in [0, 1]).

    Crop ``i`` comes from photograph ``i % len(photos)``; the draws depend only on ``seed`` and
    the crop's index, so the first ``m`` of ``n`` crops are the ``m`` crops asked for alone.
    """
    from flambient.looks import make_look

    look = make_look(look_seed)
    out: list[Pair] = []
    for i in range(n):
        name, img = photos[i % len(photos)]
        rng = np.random.default_rng([seed, i])
        h, w = img.shape[:2]
        share = rng.uniform(*CROP_SHARE)
        ch = max(8, int(h * share))
        cw = max(8, min(w, int(w * share * rng.uniform(*CROP_ASPECT))))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = bench_real.shrink(img[y:y + ch, x:x + cw], int(rng.integers(*CROP_SIDE)))
        out.append(Pair(f"{Path(name).stem}_c{i:04d}", crop, look.apply(crop)))
    return out


def read_photos(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every photograph in ``folder`` (sorted by name) as (name, sRGB HxWx3 float32 in [0, 1])."""
    from flambient.io.images import read_srgb

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    return [(p.name, read_srgb(p)) for p in files]


def _scores(test: list[Pair], predict: Any, with_flip: bool) -> dict[str, Any]:
    rows = [bench_real.score(predict(p.src), p.tgt, with_flip) for p in test]
    mean = {k: bench_real._mean(rows, k) for k in rows[0]}
    return {**mean, "worst_image_delta_e2000": max(r["delta_e2000"] for r in rows)}


def evaluate_n(train: list[Pair], test: list[Pair], model: str, overrides: dict[str, Any], tmp: Path,
               with_flip: bool) -> dict[str, Any]:
    """ten-line and finetuned, fitted on ``train``, scored on ``test``; the finetune's own record."""
    import yaml

    from flambient.baselines import fit_global_poly
    from flambient.inference import load_backend, predict_srgb

    poly = fit_global_poly([(p.src, p.tgt) for p in train])
    row: dict[str, Any] = {"ten-line": _scores(test, poly.apply, with_flip)}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=tmp, prefix="ft-") as td:
        path = bench_real.finetune_on(train, model, overrides, Path(td))
        seconds = time.perf_counter() - t0
        backend = load_backend(path)
        row["finetuned"] = _scores(test, lambda s: predict_srgb(backend, s), with_flip)
        card = yaml.safe_load((Path(path).parent / "model.yaml").read_text())
    training = card.get("training", {})
    row["finetune"] = {"seconds": seconds, "regime": training.get("regime"), "steps": training.get("steps"),
                       "kept": training.get("kept"), "own_estimate": card.get("validation"),
                       "estimate": card.get("data", {}).get("estimate")}
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, help="folder of licensed photographs to crop into training pairs")
    ap.add_argument("--data", default=str(bench_real.DEFAULT_DATA), help="the shared real data folder (test photographs)")
    ap.add_argument("--model", default="default", help="shipped model name or model path (default: default)")
    ap.add_argument("--ns", default="40,150,600", help="comma list of pair counts (default 40,150,600)")
    ap.add_argument("--look", type=int, default=0, help="seed of the simulated studio's look (default 0)")
    ap.add_argument("--few-pairs", type=int, default=None,
                    help="finetune's regime threshold (default: its own, 40); e.g. 1000 runs the few-shot regime")
    ap.add_argument("--max-side", type=int, default=384, help="long edge of the test photographs (default 384)")
    ap.add_argument("--ft-minutes", type=float, default=None, help="finetune max_minutes override (default: its own budget)")
    ap.add_argument("--ft-steps", type=int, default=None, help="finetune steps and style_steps override (smoke runs)")
    ap.add_argument("--no-flip", action="store_true", help="skip FLIP (faster)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-json", default=str(REPO / "benchmarks" / "results" / "many_pairs.json"))
    return ap.parse_args(argv)


def run(args: argparse.Namespace, log: Any = bench_real._progress) -> dict[str, Any]:
    """The benchmark; returns the JSON document (also written to ``args.out_json``)."""
    import platform

    import torch

    from flambient.inference import predict_srgb
    from flambient.looks import make_look

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ns = sorted({int(s) for s in args.ns.split(",")})
    photos = read_photos(Path(args.photos))
    look = make_look(args.look)
    test = [Pair(name, img, look.apply(img)) for name, img in bench_real.load_photos(Path(args.data), args.max_side)]
    crops = crop_pairs(photos, ns[-1], args.look)
    log(f"{len(crops)} training crops of {len(photos)} photographs, {len(test)} test photographs, look {args.look}")
    overrides: dict[str, Any] = {"previews": 0, "seed": 0}
    if args.few_pairs is not None:
        overrides["few_pairs"] = args.few_pairs
    if args.ft_minutes is not None:
        overrides["max_minutes"] = args.ft_minutes
    if args.ft_steps is not None:
        overrides["steps"] = overrides["style_steps"] = args.ft_steps
    runner = bench_real.ModelRunner(args.model)
    flip = not args.no_flip
    doc: dict[str, Any] = {"model": args.model, "photos": str(args.photos), "n_photos": len(photos),
                           "data": str(args.data), "test": [p.name for p in test], "look": make_look(args.look).to_dict(),
                           "max_side": args.max_side, "finetune_overrides": overrides, "threads": args.threads,
                           "machine": platform.processor() or platform.machine(),
                           "identity": _scores(test, lambda s: s, flip),
                           "base": _scores(test, lambda s: predict_srgb(runner.backend, s), flip), "n": {}}
    with tempfile.TemporaryDirectory(prefix="flambient-bench-many-") as td:
        for n in ns:
            row = evaluate_n(crops[:n], test, args.model, overrides, Path(td), flip)
            doc["n"][str(n)] = row
            log(f"  N={n}: dE ft {row['finetuned']['delta_e2000']:.2f} ten-line {row['ten-line']['delta_e2000']:.2f} "
                f"base {doc['base']['delta_e2000']:.2f} ({row['finetune']['regime']}, {row['finetune']['seconds'] / 60:.1f} min)")
    return bench_real.finish(doc, t0, args.out_json, markdown)


def markdown(doc: dict[str, Any]) -> str:
    """The report's markdown table."""
    f = bench_real._f
    lines = [f"### Finetune from tens to hundreds of pairs (look {doc['look']['seed']} on crops of "
             f"{doc['n_photos']} photographs; {len(doc['test'])} other real photographs as test)", "",
             f"identity dE2000 {f(doc['identity']['delta_e2000'])}, base {f(doc['base']['delta_e2000'])}", "",
             "| N | regime | ten-line dE | finetuned dE | ft worst image | ft PSNR | ft FLIP | ft abs EV | "
             "ft vs ten-line | ft vs base | finetune's own held-out estimate | steps | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in doc["n"].items():
        ft, tl, info = r["finetuned"], r["ten-line"], r["finetune"]
        own = info.get("own_estimate") or {}
        est = (f"{f(own['before']['delta_e2000'])} -> {f(own['after']['delta_e2000'])}"
               if own.get("before") and own.get("after") else "-")
        lines.append(f"| {n} | {info['regime']} | {f(tl['delta_e2000'])} | {f(ft['delta_e2000'])} | "
                     f"{f(ft['worst_image_delta_e2000'])} | {f(ft['psnr'])} | {f(ft['flip'], 3)} | "
                     f"{f(ft['abs_exposure_ev'])} | {1 - ft['delta_e2000'] / tl['delta_e2000']:+.0%} | "
                     f"{1 - ft['delta_e2000'] / doc['base']['delta_e2000']:+.0%} | {est} | {info['steps']} | "
                     f"{info['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_real.run_script(args, args.photos, "photos", "photographs", run)


if __name__ == "__main__":
    sys.exit(main())

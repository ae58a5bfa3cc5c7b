"""Benchmark: how well the grouping cues tell one composition from unrelated pictures.

Real files from ``../shared/data`` (skipped with a message when absent):

- same composition (positive pairs): the frames of each set of the Dave flambient shoot
  (ambient vs flash, 4.7-6.7 EV apart), the Canon frobisher bracket (1/8, 1, 8 s: up to
  6 EV), the FAID flash/ambient pairs (no EXIF; ``it15``/``it105`` are the same scenes as
  ``Objects_148``/``Toys_141``, so their cross pairs count as positives), the handheld phone
  flash/no-flash pairs, and 9 EV brackets synthesised from five real frames (linear light
  scaled by 2**ev for ev = -6, -3, 0, +3, clipped and quantised to 8-bit sRGB like a JPEG);
- unrelated (negative pairs): every pair of different scenes among all of those images and
  the FiveK inputs (interiors of one house among them).

Every image is centre-cropped to 3:2 (portrait ones turned) and resized to 480x320 first, so
that every pair is comparable (grouping compares only frames of one size; this is the worst
case, as if all were exported at one size). For each pair: the thumbnail similarity grouping
uses (:func:`flambient.brackets.thumb_similarity`, 64 px, shifts up to 2 px) and the feature
match (:mod:`flambient.match`: SIFT inliers and drift). Prints a table of the distributions
and the error counts of the decision rules, and writes JSON (``--json``, default
benchmarks/results/grouping.json).

Usage: ``python benchmarks/bench_grouping.py [--data ../shared/data] [--json PATH]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from flambient.brackets import GroupingConfig, luminance_thumb, thumb_similarity
from flambient.colour import linear_to_srgb, srgb_to_linear
from flambient.io.atomic import atomic_write_text
from flambient.io.images import read_preview
from flambient.match import feature_match, features, match_image

DAVE = "flambient-brackets-small-davepeloso-prophoto"
SIZE = (480, 320)
#: FAID scenes stored twice under two names.
SAME_SCENE = {"it15": "Objects_148", "it105": "Toys_141"}


def fit(img: np.ndarray, w: int = SIZE[0], h: int = SIZE[1]) -> np.ndarray:
    """Centre-crop a linear HxWx3 image to w:h (portrait turned first) and resize to w x h."""
    import cv2

    ih, iw = img.shape[:2]
    if ih > iw:
        img = np.rot90(img).copy()
        ih, iw = iw, ih
    if iw * h > ih * w:
        cw = ih * w // h
        img = img[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = iw * h // w
        img = img[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    return cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA)


def bracket(lin: np.ndarray, evs: tuple[int, ...]) -> list[np.ndarray]:
    """Exposures of one linear picture: ``lin * 2**ev`` clipped and quantised to 8-bit sRGB."""
    out = []
    for ev in evs:
        q = np.round(linear_to_srgb(np.clip(lin * 2.0 ** ev, 0, 1)) * 255) / 255
        out.append(srgb_to_linear(q).astype(np.float32))
    return out


def load_images(data: Path) -> list[tuple[str, str, np.ndarray]]:
    """``(scene, name, linear 480x320 image)`` of every real picture the benchmark uses."""
    items: list[tuple[str, str, Path]] = []
    for p in sorted((data / DAVE).glob("set*/*.jpg")):
        items.append((f"dave/{p.parent.name}", p.stem, p))
    for p in sorted((data / "bracket-colour-hdri-frobisher").glob("*.jpg")):
        items.append(("frobisher", p.stem, p))
    for p in sorted((data / "faid-flash-ambient-jozech").glob("*.png")):
        scene = p.stem.rsplit("_", 1)[0]
        items.append((f"faid/{SAME_SCENE.get(scene, scene)}", p.stem, p))
    for p in sorted((data / "fivek-pairs-deeplpf").glob("*_input.png")):
        items.append((f"fivek/{p.stem}", p.stem, p))
    for p in sorted((data / "flash-noflash-phone-akdeb").glob("*.tif")):
        items.append((f"phone/{p.stem.split('_')[0]}", p.stem, p))
    out = [(scene, name, fit(read_preview(p, 1024)[0])) for scene, name, p in items]
    by_name = {name: img for _s, name, img in out}
    for src in ("mariposa-0001", "mariposa-0009", "IMG_2601", "a4514_input", "a4742_input"):
        for ev, img in zip((-6, -3, 0, 3), bracket(by_name[src], (-6, -3, 0, 3))):
            out.append((f"bracket9ev/{src}", f"{src}@{ev:+d}EV", img))
    return out


def kind(scene_a: str, scene_b: str) -> str:
    """Which family a positive pair belongs to (for the per-family table)."""
    return scene_a.split("/")[0]


def summary(values: list[float]) -> dict[str, float]:
    """min, 5th percentile, median, 95th percentile and max."""
    if not values:
        return {}
    p = np.percentile(values, [0, 5, 50, 95, 100])
    return {k: round(float(v), 3) for k, v in zip(("min", "p5", "median", "p95", "max"), p)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/grouping.json"))
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"real data not found at {args.data}; nothing to measure", file=sys.stderr)
        return 2
    cfg = GroupingConfig()
    imgs = load_images(args.data)
    t0 = time.perf_counter()
    thumbs = [luminance_thumb(img, cfg.thumb_size) for _s, _n, img in imgs]
    t_thumb = (time.perf_counter() - t0) / len(imgs)
    t0 = time.perf_counter()
    feats = []
    for _s, _n, img in imgs:
        m8 = match_image(img, cfg.match_size)
        feats.append((features(m8), m8.shape))
    t_feat = (time.perf_counter() - t0) / len(imgs)
    pairs: list[dict[str, Any]] = []
    t_sim = t_match = 0.0
    for i, j in itertools.combinations(range(len(imgs)), 2):
        (sa, na, _a), (sb, nb, _b) = imgs[i], imgs[j]
        same = sa == sb
        if not same and ("bracket9ev" in sa or "bracket9ev" in sb):
            continue  # the synthetic exposures add positives only; their sources are negatives already
        t0 = time.perf_counter()
        sim = thumb_similarity(thumbs[i], thumbs[j], cfg.max_shift)
        t1 = time.perf_counter()
        m = feature_match(feats[i][0], feats[j][0], feats[i][1])
        t_sim += t1 - t0
        t_match += time.perf_counter() - t1
        pairs.append({"a": na, "b": nb, "family": kind(sa, sb) if same else "unrelated", "same": same,
                      "similarity": round(sim, 4), "inliers": m.inliers, "drift": round(m.drift, 4)})
    pos = [p for p in pairs if p["same"]]
    neg = [p for p in pairs if not p["same"]]

    def confirms(p: dict[str, Any]) -> bool:
        return p["inliers"] >= cfg.min_inliers and p["drift"] <= cfg.max_drift

    rules = {
        "similarity >= 0.35 (before issue 12)": lambda p: p["similarity"] >= 0.35,
        f"similarity >= {cfg.sure_similarity:g} (sure_similarity)": lambda p: p["similarity"] >= cfg.sure_similarity,
        f"features: inliers >= {cfg.min_inliers} and drift <= {cfg.max_drift:g} (no-EXIF rule)": confirms,
        f"features or similarity >= {cfg.sure_similarity:g} (EXIF frames)":
            lambda p: confirms(p) or p["similarity"] >= cfg.sure_similarity,
    }
    errors = {name: {"false_joins": sum(rule(p) for p in neg), "false_splits": sum(not rule(p) for p in pos),
                     "false_split_pairs": [f"{p['a']} / {p['b']}" for p in pos if not rule(p)][:12],
                     "false_join_pairs": [f"{p['a']} / {p['b']}" for p in neg if rule(p)][:12]}
              for name, rule in rules.items()}
    families = sorted({p["family"] for p in pos})
    dist = {
        "unrelated": {c: summary([p[c] for p in neg]) for c in ("similarity", "inliers", "drift")},
        "same composition": {c: summary([p[c] for p in pos]) for c in ("similarity", "inliers", "drift")},
        "by family": {f: {c: summary([p[c] for p in pos if p["family"] == f]) for c in ("similarity", "inliers")}
                      for f in families},
        "unrelated, drift <= max_drift": {"pairs": sum(p["drift"] <= cfg.max_drift for p in neg),
                                          "max inliers": max([p["inliers"] for p in neg
                                                              if p["drift"] <= cfg.max_drift], default=0)},
    }
    doc = {
        "benchmark": "grouping",
        "python": platform.python_version(),
        "images": len(imgs),
        "size": list(SIZE),
        "pairs": {"same composition": len(pos), "unrelated": len(neg)},
        "thresholds": {k: getattr(cfg, k) for k in ("min_similarity", "min_similarity_expected", "sure_similarity",
                                                    "min_inliers", "max_drift", "match_size", "thumb_size")},
        "distributions": dist,
        "errors": errors,
        "seconds": {"thumbnail per image": round(t_thumb, 4), "features per image": round(t_feat, 4),
                    "similarity per pair": round(t_sim / len(pairs), 4),
                    "match per pair": round(t_match / len(pairs), 4)},
        "same_composition_pairs": pos,
        # the unrelated pairs closest to a false join, by each cue
        "unrelated_top_similarity": sorted(neg, key=lambda p: -p["similarity"])[:25],
        "unrelated_top_inliers": sorted(neg, key=lambda p: -p["inliers"])[:25],
        "unrelated_lowest_drift": sorted(neg, key=lambda p: p["drift"])[:25],
    }
    _print(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def _print(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"cue distributions ({doc['pairs']['same composition']} same-composition pairs, "
                    f"{doc['pairs']['unrelated']} unrelated pairs, {doc['size'][0]}x{doc['size'][1]})")
    for col in ("pairs", "cue", "min", "p5", "median", "p95", "max"):
        t.add_column(col)
    d = doc["distributions"]
    for group in ("same composition", "unrelated"):
        for cue, s in d[group].items():
            t.add_row(group, cue, *(f"{s[k]:g}" for k in ("min", "p5", "median", "p95", "max")))
    for fam, cues in d["by family"].items():
        for cue, s in cues.items():
            t.add_row(f"  {fam}", cue, *(f"{s[k]:g}" for k in ("min", "p5", "median", "p95", "max")))
    con.print(t)
    e = Table(title="decision rules: errors")
    for col in ("rule", "false joins (unrelated)", "false splits (same)", "false splits"):
        e.add_column(col)
    for rule, r in doc["errors"].items():
        e.add_row(rule, str(r["false_joins"]), str(r["false_splits"]), ", ".join(r["false_split_pairs"][:4]))
    con.print(e)
    con.print(f"unrelated pairs with drift <= max_drift: {d['unrelated, drift <= max_drift']}; "
              f"seconds: {doc['seconds']}")


if __name__ == "__main__":
    sys.exit(main())

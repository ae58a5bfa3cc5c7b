"""``flambient eval``: score a folder of predictions against a folder of reference edits.

PRED and TRUTH are folders of images matched by file stem. Images whose sizes differ by a few
pixels are centre-cropped / edge-padded to the truth's size (as real retouching pairs are);
larger differences with the same aspect ratio are resized; anything else is an error for that
image. A stem present on one side only is reported in :attr:`EvalResult.missing`.

Window masks for window-region dE come from TRUTH (``<stem>_window.png``, as ``flambient
synth`` writes them) or else from the input stack's mask channel.

With ``inputs`` (a shoot folder or a dataset folder), each image's input stack is looked up by
stem (shoot: bracket-set name from the ingest manifest; dataset: item name); it gives the
report's input thumbnail, the window mask for window-region dE and, with ``baselines``, the
classical blends of :mod:`flambient.baselines`, scored with the same metrics.

All images handled here are sRGB HxWx3 float32 in [0, 1]; stacks are linear HxWx13.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import baselines as bl
from . import colour, metrics
from .dataset import fit_to, load_dataset
from .errors import FlambientError, InputError
from .io.atomic import atomic_write_text
from .io.images import IMAGE_EXTENSIONS, encode_jpeg, read_srgb
from .log import get_logger
from .outcome import ItemError, batch_exit_code
from .provenance import Provenance, read_provenance
from .stack import HAS_MASK, MASK

log = get_logger("eval")

#: Largest per-axis size difference (px) fixed by crop/pad rather than by resizing.
MAX_PIXEL_SHIFT = 8
#: Longest side (px) of the views kept for the report (JPEG; enlarged on click).
VIEW_SIDE = 1024
#: JPEG quality of the report's views.
VIEW_QUALITY = 85
#: CIEDE2000 at which the report's heat map reaches its brightest colour.
HEATMAP_MAX_DE = 20.0
#: CIEDE2000 histogram bins (pooled over all pixels) kept for the report.
DE_BINS = np.linspace(0.0, 30.0, 31)
#: Preference order when one stem exists in several formats (lossless first).
_FORMAT_ORDER = (".png", ".tif", ".tiff", ".exr", ".jpg", ".jpeg")


@dataclass(frozen=True)
class View:
    """One picture of the report: sRGB JPEG bytes (no ICC) and its size in pixels."""

    jpeg: bytes
    width: int
    height: int

    @classmethod
    def of(cls, srgb: np.ndarray, side: int = VIEW_SIDE) -> View:
        """Shrink an sRGB HxWx3 image to at most ``side`` px and encode it."""
        small = _thumb(srgb, side)
        h, w = small.shape[:2]
        return cls(encode_jpeg(small, quality=VIEW_QUALITY, icc=False), w, h)


@dataclass
class ImageResult:
    """Scores of one image: ``metrics`` (key -> float, NaN when undefined) plus report data.

    ``views`` holds the report's pictures as :class:`View` (``input``, ``pred``, ``truth``,
    ``error`` = dE heat map), kept encoded so a long eval holds little memory; ``de_hist``
    the per-pixel dE histogram over :data:`DE_BINS`; ``tone`` the fitted tone curve
    (prediction L*, truth L*) from :func:`flambient.metrics.tone_curve_fit`;
    ``baseline_metrics`` each baseline's metrics on this image.
    """

    name: str
    metrics: dict[str, float]
    pred: Path
    truth: Path
    views: dict[str, View] = field(default_factory=dict)
    de_hist: np.ndarray | None = None
    tone: tuple[np.ndarray, np.ndarray] | None = None
    baseline_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class MethodScores:
    """Per-image metrics of one method (the model or a baseline) and their statistics."""

    images: list[dict[str, float]] = field(default_factory=list)
    de_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(DE_BINS) - 1))

    def stats(self) -> dict[str, dict[str, float]]:
        """metric -> {mean, median, p95} over the images (NaN values ignored)."""
        return aggregate_stats(self.images)

    def aggregate(self) -> dict[str, float]:
        """metric -> mean over the images."""
        return {k: v["mean"] for k, v in self.stats().items()}


@dataclass
class EvalResult:
    """Everything ``eval`` measured: per-image results, baselines and missing partners."""

    pred_dir: Path
    truth_dir: Path
    images: list[ImageResult]
    missing: list[str]
    #: Images that could not be scored, one line each (``metrics.json``'s ``failed``).
    failed: list[str]
    baselines: dict[str, MethodScores] = field(default_factory=dict)
    inputs: Path | None = None
    provenance: Provenance | None = None
    #: The same images as :class:`~flambient.outcome.ItemError` records (from ``failed`` when not given).
    failures: list[ItemError] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.failed and not self.failures:
            self.failures = [ItemError(line, line) for line in self.failed]

    def add_failure(self, failure: ItemError) -> None:
        """Record an image that could not be scored (in ``failures`` and ``failed``)."""
        self.failures.append(failure)
        self.failed.append(str(failure))

    @property
    def exit_code(self) -> int:
        """The batch exit rule (:func:`flambient.outcome.batch_exit_code`); a missing partner
        counts as a run-level problem."""
        return batch_exit_code(self.failures, problems=len(self.missing))

    @property
    def model(self) -> MethodScores:
        """The prediction's scores as a :class:`MethodScores`."""
        ms = MethodScores(images=[r.metrics for r in self.images])
        for r in self.images:
            if r.de_hist is not None:
                ms.de_hist = ms.de_hist + r.de_hist
        return ms

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` document (NaN written as null).

        Header fields first: ``flambient_version`` (of this eval), ``verdict`` (the report's
        sentence) and, from :class:`~flambient.provenance.Provenance`, ``model``, ``preset``,
        ``finals_flambient_version``, ``provenance``, ``finals_with_sidecar``.
        """
        from . import __version__
        from .verdict import verdict

        model = self.model
        doc: dict[str, Any] = {"flambient_version": __version__, "verdict": verdict(self)}
        if self.provenance is not None:
            doc.update(self.provenance.to_json())
        doc.update({
            "aggregate": model.aggregate(),
            "stats": model.stats(),
            "images": [{"name": r.name, **r.metrics} for r in self.images],
            "count": len(self.images),
            "missing": list(self.missing),
            "failed": list(self.failed),
            "pred": str(self.pred_dir),
            "truth": str(self.truth_dir),
        })
        if self.inputs is not None:
            doc["inputs"] = str(self.inputs)
        if self.baselines:
            doc["baselines"] = {name: ms.aggregate() for name, ms in self.baselines.items()}
            doc["baseline_stats"] = {name: ms.stats() for name, ms in self.baselines.items()}
        return _nan_to_none(doc)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def aggregate_stats(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {mean, median, p95} over ``rows`` (NaN ignored; NaN when no value)."""
    keys: list[str] = list(metrics.METRIC_KEYS)
    for r in rows:
        keys += [k for k in r if k not in keys]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([r[k] for r in rows if k in r and r[k] is not None], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            out[k] = {"mean": float("nan"), "median": float("nan"), "p95": float("nan")}
        else:
            out[k] = {"mean": float(vals.mean()), "median": float(np.median(vals)),
                      "p95": float(np.percentile(vals, 95))}
    return out


# ----------------------------------------------------------------------------- pairing


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files directly in ``folder`` by stem (hidden files skipped).

    When a stem exists in several formats the lossless one is used (PNG, TIFF, EXR, then JPEG)
    and the others are logged. Raises :class:`InputError` for a missing folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("folder not found", root, "pass a folder of images")
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(p.stem, []).append(p)
    out: dict[str, Path] = {}
    for stem, paths in by_stem.items():
        paths.sort(key=lambda q: _FORMAT_ORDER.index(q.suffix.lower()) if q.suffix.lower() in _FORMAT_ORDER else 99)
        out[stem] = paths[0]
        if len(paths) > 1:
            log.warning("%s: several files named '%s'; using %s", root, stem, paths[0].name)
    return out


#: Stem suffixes of window masks stored next to truth images (``<stem>_window.png``).
MASK_SUFFIXES = ("_window", "_mask")


def split_masks(images: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Separate window masks from images: ``<stem>_window.*`` or ``<stem>_mask.*`` next to an
    image ``<stem>.*`` is that image's mask (the layout ``flambient synth`` writes in
    ``truth/``). Returns ``(images, masks by image stem)``."""
    masks: dict[str, Path] = {}
    for stem, p in images.items():
        for suf in MASK_SUFFIXES:
            if stem.endswith(suf) and stem[: -len(suf)] in images:
                masks[stem[: -len(suf)]] = p
    rest = {s: p for s, p in images.items() if p not in masks.values()}
    return rest, masks


def truth_masks(truth_dir: str | Path) -> dict[str, Path]:
    """Window masks stored in TRUTH (see :func:`split_masks`), by image stem."""
    return split_masks(list_images(truth_dir))[1]


def match_pairs(pred_dir: str | Path, truth_dir: str | Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair PRED and TRUTH images by stem: ``([(stem, pred, truth), ...], missing messages)``.

    Window masks in TRUTH (:func:`split_masks`) are not images to pair. Raises
    :class:`InputError` when either folder is missing or no stem matches.
    """
    preds, truths = list_images(pred_dir), split_masks(list_images(truth_dir))[0]
    pairs = [(s, preds[s], truths[s]) for s in sorted(preds) if s in truths]
    missing = [f"{preds[s]}: no truth image named '{s}.*' in {truth_dir}" for s in sorted(preds) if s not in truths]
    missing += [f"{truths[s]}: no prediction named '{s}.*' in {pred_dir}" for s in sorted(truths) if s not in preds]
    if not pairs:
        raise InputError(f"no image stems in common with {truth_dir} ({len(preds)} prediction(s), "
                         f"{len(truths)} truth image(s))", pred_dir, "name predictions like their reference edits")
    return pairs, missing


def align_to(img: np.ndarray, hw: tuple[int, int], path: Path | None = None) -> np.ndarray:
    """Bring an HxWxC image to size ``hw``: crop/pad when at most :data:`MAX_PIXEL_SHIFT` px off
    per axis, resize (area) when only the scale differs (aspect within 1%), else InputError."""
    h, w = hw
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    if abs(ih - h) <= MAX_PIXEL_SHIFT and abs(iw - w) <= MAX_PIXEL_SHIFT:
        return fit_to(img, hw)
    if abs((iw / ih) / (w / h) - 1.0) < 0.01:
        interp = cv2.INTER_AREA if iw > w else cv2.INTER_LINEAR
        out = cv2.resize(img, (w, h), interpolation=interp)
        return out[:, :, None] if out.ndim == 2 else out
    raise InputError(f"size {iw}x{ih} does not match the reference {w}x{h}", path,
                     "predictions must have the reference's framing")


# ----------------------------------------------------------------------------- inputs


InputLoader = Callable[[], np.ndarray]


def input_loaders(inputs: str | Path) -> dict[str, InputLoader]:
    """Stem -> function returning the HxWx13 linear input stack, for a shoot or dataset folder.

    A folder with ``dataset.yaml`` is a dataset (items by name); any other folder is a shoot,
    ingested again (the way its manifest was made) unless that is fresh (bracket sets by name;
    :func:`flambient.ingest.current_manifest`).
    """
    root = Path(inputs)
    if not root.is_dir():
        raise InputError("inputs folder not found", root, "pass a shoot folder or a dataset folder")
    if (root / "dataset.yaml").is_file():
        items = load_dataset(root)
        return {it.name: (lambda it=it: it.load()[0]) for it in items}
    from .ingest import current_manifest, load_set_stack

    manifest = current_manifest(root)
    return {s.name: (lambda s=s: load_set_stack(root, s)) for s in manifest.sets}


# ----------------------------------------------------------------------------- scoring


def _thumb(img: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(img, dtype=np.float32)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(img, dtype=np.float32), size, interpolation=cv2.INTER_AREA)


def error_heatmap(de: np.ndarray, vmax: float = HEATMAP_MAX_DE) -> np.ndarray:
    """An sRGB HxWx3 heat map (matplotlib 'inferno') of a per-pixel dE map, 0..``vmax``."""
    from matplotlib import colormaps

    cmap = colormaps["inferno"]
    return cmap(np.clip(de / vmax, 0.0, 1.0))[..., :3].astype(np.float32)


def score_image(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray]:
    """All metrics of one aligned pair plus its per-pixel CIEDE2000 map (HxW)."""
    de = metrics.delta_e_map(np.clip(pred, 0, 1), np.clip(truth, 0, 1))
    return metrics.all_metrics(pred, truth, window_mask=mask, de_map=de), de


def _stack_mask(stack: np.ndarray | None) -> np.ndarray | None:
    if stack is None or stack[0, 0, HAS_MASK] < 0.5:
        return None
    return stack[:, :, MASK]


def evaluate(
    pred_dir: str | Path,
    truth_dir: str | Path,
    inputs: str | Path | None = None,
    with_baselines: bool = False,
    keep_views: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    model: str | None = None,
    preset: str | None = None,
) -> EvalResult:
    """Score every PRED image against its TRUTH partner (and the baselines, when asked).

    ``with_baselines`` needs ``inputs``. ``keep_views`` keeps thumbnails and curves for the
    report. ``progress(done, total, name)`` is called after each image. Images that cannot
    be read are listed in :attr:`EvalResult.failed`; missing partners in ``missing``.
    ``model`` / ``preset`` name what made the predictions when their sidecars do not (or
    override them); see :func:`flambient.provenance.read_provenance`.
    """
    if with_baselines and inputs is None:
        raise InputError("--baselines needs --inputs", hint="pass the shoot or dataset the predictions were made from")
    pairs, missing = match_pairs(pred_dir, truth_dir)
    loaders = input_loaders(inputs) if inputs is not None else {}
    masks = truth_masks(truth_dir)
    result = EvalResult(pred_dir=Path(pred_dir), truth_dir=Path(truth_dir), images=[], missing=missing,
                        failed=[], inputs=Path(inputs) if inputs is not None else None,
                        provenance=read_provenance([p for _s, p, _t in pairs], model, preset))
    if with_baselines:
        result.baselines = {name: MethodScores() for name in bl.BASELINES}
    for i, (stem, pred_path, truth_path) in enumerate(pairs):
        if progress is not None:
            progress(i, len(pairs), stem)
        try:
            res = _evaluate_one(stem, pred_path, truth_path, loaders, masks.get(stem), result, with_baselines,
                                keep_views)
        except FlambientError as exc:
            log.error("%s", exc)
            result.add_failure(ItemError.from_exception(stem, exc))
            continue
        result.images.append(res)
    if progress is not None:
        progress(len(pairs), len(pairs), "")
    if inputs is not None:
        for stem, _p, _t in pairs:
            if stem not in loaders:
                result.missing.append(f"{inputs}: no input set or item named '{stem}'")
    return result


def _evaluate_one(
    stem: str,
    pred_path: Path,
    truth_path: Path,
    loaders: dict[str, InputLoader],
    mask_path: Path | None,
    result: EvalResult,
    with_baselines: bool,
    keep_views: bool,
) -> ImageResult:
    truth = read_srgb(truth_path)
    hw = truth.shape[:2]
    pred = align_to(read_srgb(pred_path), hw, pred_path)
    stack = None
    if stem in loaders:
        stack = align_to(loaders[stem](), hw, result.inputs)
    if mask_path is not None:
        mask = align_to(read_srgb(mask_path), hw, mask_path)[:, :, 0]
    else:
        mask = _stack_mask(stack)
    scores, de = score_image(pred, truth, mask)
    res = ImageResult(name=stem, metrics=scores, pred=pred_path, truth=truth_path)
    res.de_hist = np.histogram(np.clip(de, DE_BINS[0], DE_BINS[-1]), bins=DE_BINS)[0].astype(np.float64)
    if keep_views:
        res.views = {"pred": View.of(pred), "truth": View.of(truth), "error": View.of(error_heatmap(_thumb(de)))}
        if stack is not None:
            res.views["input"] = View.of(colour.linear_to_srgb(stack[:, :, 0:3]))
        x, y, _share = metrics.tone_curve_fit(pred, truth)
        res.tone = (x, y)
    if with_baselines and stack is not None:
        for name, img in bl.run_baselines(stack).items():
            b_scores, b_de = score_image(img, truth, mask)
            ms = result.baselines[name]
            ms.images.append(b_scores)
            ms.de_hist = ms.de_hist + np.histogram(np.clip(b_de, DE_BINS[0], DE_BINS[-1]), bins=DE_BINS)[0]
            res.baseline_metrics[name] = b_scores
    return res


def write_metrics_json(result: EvalResult, path: str | Path) -> Path:
    """Write ``metrics.json`` (see :meth:`EvalResult.to_json`) atomically."""
    atomic_write_text(path, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------- terminal table


def format_value(key: str, v: float | None) -> str:
    """A metric value for tables: 2-4 significant decimals by metric, '-' when undefined."""
    if v is None or not math.isfinite(v):
        return "-"
    if key in ("ssim", "ms_ssim", "flip", "delta_rgb", "clipped"):
        return f"{v:.4f}"
    if key == "exposure_ev":
        return f"{v:+.2f}"
    return f"{v:.2f}"


def summary_table(result: EvalResult) -> Any:
    """A rich Table: one row per metric; model mean / median / p95, then each baseline's mean."""
    from rich.table import Table

    stats = result.model.stats()
    table = Table(title=f"eval: {len(result.images)} image(s)")
    table.add_column("metric")
    table.add_column("model mean", justify="right")
    table.add_column("median", justify="right")
    table.add_column("p95", justify="right")
    b_aggs = {name: ms.aggregate() for name, ms in result.baselines.items()}
    for name in b_aggs:
        table.add_column(f"{name} mean", justify="right")
    for key, st in stats.items():
        arrow = " (higher better)" if key in metrics.HIGHER_IS_BETTER else ""
        row = [key + arrow, format_value(key, st["mean"]), format_value(key, st["median"]), format_value(key, st["p95"])]
        row += [format_value(key, agg.get(key)) for agg in b_aggs.values()]
        table.add_row(*row)
    return table

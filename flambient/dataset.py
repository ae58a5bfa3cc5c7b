"""The training dataset format: what ``ingest --pairs`` (and ``synth``) write, what ``train`` reads.

Layout of a dataset folder::

    DATASET/dataset.yaml        index (below)
    DATASET/items/<name>/ambient.exr   linear RGB, exposure-normalised, half float
    DATASET/items/<name>/flash.exr     optional, same size
    DATASET/items/<name>/window.exr    optional window-pull frame
    DATASET/items/<name>/mask.png      optional window mask (8-bit grey, 255 = window)
    DATASET/items/<name>/target.png    the edited final, sRGB (16-bit PNG)

``dataset.yaml``::

    format: flambient-dataset
    version: 1
    items:
      - {name: set01, ambient: items/set01/ambient.exr, flash: items/set01/flash.exr,
         window: null, mask: null, target: items/set01/target.png, source: "...", notes: []}
    unmatched: ["path: why", ...]      # sources without targets and the reverse

All paths are relative to DATASET and must stay inside it (``..`` out of it or an absolute path
is an error naming the index); item names are plain file names. Readers use :func:`load_dataset`; writers use
:func:`write_item` then :func:`write_index`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import InputError, first_line
from .io.atomic import atomic_write_text
from .io.images import read_exr, read_linear, read_srgb, write_exr, write_png
from .safepath import check_name, contained
from .stack import build_stack

DATASET_FORMAT = "flambient-dataset"
DATASET_VERSION = 1


@dataclass
class PairItem:
    """One training pair: paths to the input frames and the target (absolute paths)."""

    name: str
    ambient: Path
    target: Path
    flash: Path | None = None
    window: Path | None = None
    mask: Path | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(stack, target)``: HxWx13 linear float32 stack and HxWx3 sRGB target in [0, 1].

        The target is centre-cropped or edge-padded to the stack's size when they differ by a
        few pixels (real retouching pairs do).
        """
        ambient = read_exr(self.ambient) if self.ambient.suffix == ".exr" else read_linear(self.ambient)
        flash = _opt_linear(self.flash)
        window = _opt_linear(self.window)
        mask = read_srgb(self.mask)[:, :, 0] if self.mask is not None else None
        stack = build_stack(ambient, flash, window, mask)
        target = fit_to(read_srgb(self.target), stack.shape[:2])
        return stack, target


def _opt_linear(p: Path | None) -> np.ndarray | None:
    if p is None:
        return None
    return read_exr(p) if p.suffix == ".exr" else read_linear(p)


def fit_to(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Centre-crop and/or edge-pad an HxWxC image to exactly ``hw`` (for pairs a few px apart)."""
    h, w = hw
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    top, left = max(0, (ih - h) // 2), max(0, (iw - w) // 2)
    img = img[top : top + h, left : left + w]
    ph, pw = h - img.shape[0], w - img.shape[1]
    if ph or pw:
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")
    return img


def write_item(
    dataset: str | Path,
    name: str,
    ambient: np.ndarray,
    target_srgb: np.ndarray,
    flash: np.ndarray | None = None,
    window: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    source: str = "",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Write one pair's files under ``DATASET/items/<name>/``; returns its index entry.

    ``ambient``/``flash``/``window`` are linear HxWx3 float32; ``mask`` HxW in [0, 1];
    ``target_srgb`` HxWx3 sRGB in [0, 1] (written as 16-bit PNG).
    """
    root = Path(dataset)
    d = root / "items" / check_name(name, root, "item name")
    d.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"name": name, "source": source, "notes": list(notes or [])}
    write_exr(d / "ambient.exr", ambient)
    entry["ambient"] = f"items/{name}/ambient.exr"
    for key, arr in (("flash", flash), ("window", window)):
        if arr is not None:
            write_exr(d / f"{key}.exr", arr)
            entry[key] = f"items/{name}/{key}.exr"
        else:
            entry[key] = None
    if mask is not None:
        write_png(d / "mask.png", np.repeat(mask[:, :, None], 3, axis=2))
        entry["mask"] = f"items/{name}/mask.png"
    else:
        entry["mask"] = None
    write_png(d / "target.png", target_srgb, bits=16)
    entry["target"] = f"items/{name}/target.png"
    return entry


def write_index(dataset: str | Path, entries: list[dict[str, Any]], unmatched: list[str] | None = None) -> Path:
    """Write ``DATASET/dataset.yaml`` atomically for the given item entries."""
    doc = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "items": entries,
        "unmatched": list(unmatched or []),
    }
    return atomic_write_text(Path(dataset) / "dataset.yaml", yaml.safe_dump(doc, sort_keys=False))


def load_dataset(dataset: str | Path) -> list[PairItem]:
    """Read ``DATASET/dataset.yaml`` into :class:`PairItem` records (paths made absolute).

    Raises :class:`InputError` when the folder holds no dataset, the YAML is malformed, or an
    item's files are missing.
    """
    root = Path(dataset)
    index = root / "dataset.yaml"
    if not index.is_file():
        raise InputError("no dataset.yaml here", root, "make one with `flambient ingest --pairs SRC --out DATASET`")
    try:
        doc = yaml.safe_load(index.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML ({first_line(exc)})", index) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", index) from None
    if not isinstance(doc, dict) or doc.get("format") != DATASET_FORMAT:
        raise InputError("not a flambient dataset index", index)
    items: list[PairItem] = []

    def inside(raw: dict[str, Any], key: str) -> Path:  # a path of the index, kept inside DATASET
        return contained(root, raw[key], index, f"item {key} path")

    for raw in doc.get("items") or []:
        try:
            item = PairItem(
                name=check_name(str(raw["name"]), index, "item name"),
                ambient=inside(raw, "ambient"),
                target=inside(raw, "target"),
                flash=inside(raw, "flash") if raw.get("flash") else None,
                window=inside(raw, "window") if raw.get("window") else None,
                mask=inside(raw, "mask") if raw.get("mask") else None,
                source=str(raw.get("source", "")),
                notes=list(raw.get("notes") or []),
            )
        except (KeyError, TypeError):
            raise InputError(f"item without name, ambient or target: {raw!r:.80}", index) from None
        for p in (item.ambient, item.target, item.flash, item.window, item.mask):
            if p is not None and not p.is_file():
                raise InputError(f"item '{item.name}' lists a missing file", p)
        items.append(item)
    if not items:
        raise InputError("dataset has no items", index)
    return items

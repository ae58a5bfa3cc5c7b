"""Tile plans, smooth-ramp overlap weights and stitching for full-resolution inference.

A :class:`TilePlan` cuts an ``H x W`` image into a grid of rectangular tiles that

- cover the image exactly (every pixel lies in at least one tile, no tile leaves the image),
- are evened out (all tiles of one axis have the same size, spread evenly from edge to edge,
  so there is no thin sliver at the right or bottom border),
- start on multiples of ``multiple`` (the family's ``spec.size_multiple``) and have sizes that
  are multiples of it, except the last tile of an axis, which ends at the image edge and is
  padded by the runner with :func:`pad_to_multiple` exactly as a whole-image run pads the
  image (so a U-Net sees the whole image's pooling grid in every tile),
- overlap their neighbours by at least ``overlap`` pixels.

The plan depends only on its arguments, never on the device, so CPU and GPU runs cut the
same tiles.

Blending: where two tiles overlap, the ``margin`` pixels next to each tile's inner border
(the model's receptive field, ``spec.overlap``) get weight 0 for that tile, and a raised-cosine
ramp carries the weight from one tile to the other across the rest of the overlap (not uniform
averaging, which leaves visible seams). The 1-D weights of every axis are normalised to sum to
exactly one at each coordinate, so the 2-D weights (outer products) are a partition of unity
and a constant image stitches back exactly. Tiles that do not overlap are copied, so
per-pixel ("tile-exact") families give the same output tiled and untiled up to float
rounding inside the net. :func:`flambient.inference.infer_image` plans with
``margin = spec.overlap`` and ``overlap = 2 * margin + ramp``.

Typical use::

    plan = plan_tiles(h, w, tile=1024, overlap=80, multiple=spec.size_multiple, margin=spec.overlap)
    out = Stitcher(plan, channels=3)
    for t in plan:
        out.add(t, run_model(stack[t.slices]))  # t.h x t.w x 3
    srgb = out.result()                        # H x W x 3

or, in one call, ``stitch(plan, (run(stack[t.slices]) for t in plan))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: rows ``y0:y0+h``, columns ``x0:x0+w`` (pixels), grid index (row, col)."""

    y0: int
    x0: int
    h: int
    w: int
    row: int = 0
    col: int = 0

    @property
    def y1(self) -> int:
        """Exclusive end row."""
        return self.y0 + self.h

    @property
    def x1(self) -> int:
        """Exclusive end column."""
        return self.x0 + self.w

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices for indexing an HxWxC array: ``img[tile.slices]``."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


#: Smallest and largest tile side (pixels) a preset or ``--tile`` may ask for (0/None = whole image).
MIN_TILE = 128
MAX_TILE = 16384
#: Largest model margin (``--overlap``, ``tiling.overlap``) in pixels.
MAX_MARGIN = 512


def plan_overlap(margin: int) -> int:
    """Overlap between neighbouring tiles for a model margin: both margins plus a ramp of ``margin / 2``.

    0 for per-pixel families (no overlap at all).
    """
    return 0 if margin <= 0 else 2 * margin + max(4, margin // 2)


def tiling_problem(tile: int | None, margin: int | None, multiple: int = 1,
                   names: tuple[str, str] = ("--tile", "--overlap"), ranges: bool = True) -> tuple[str, str] | None:
    """The one rule for tile side and margin: None when they work, else ``(message, hint)``.

    ``tile`` None or 0 is the whole image (always fine); otherwise ``MIN_TILE <= tile <=
    MAX_TILE``. ``margin`` (None = unknown yet, the model's) is ``0..MAX_MARGIN``. A tile must
    exceed the overlap the plan puts between tiles (:func:`plan_overlap` of the margin) by
    more than the size multiple, after rounding down to that multiple (what
    :func:`axis_spans` needs). ``names`` are what the messages call the two settings.
    ``ranges=False`` checks only that last, structural part (library callers such as tests
    may tile tiny images with tiles below ``MIN_TILE``).
    """
    tname, mname = names
    if margin is not None and (margin < 0 or (ranges and margin > MAX_MARGIN)):
        return f"{mname} {margin} is out of range", f"use 0 to {MAX_MARGIN} pixels, or leave it to the model"
    if tile is None or tile == 0:
        return None
    if tile < 0:
        return f"{tname} {tile} is negative", f"use 0 (whole image) or {MIN_TILE} to {MAX_TILE} pixels"
    if ranges and not MIN_TILE <= tile <= MAX_TILE:
        return f"{tname} {tile} is out of range", f"use 0 (whole image) or {MIN_TILE} to {MAX_TILE} pixels"
    if margin:
        m = max(1, multiple)
        need = plan_overlap(margin) + m + 1  # smallest tile (after rounding to m) that leaves room
        if max(m, tile // m * m) < need:
            need_m = -(-need // m) * m
            return (f"{tname} {tile} is too small for {mname} {margin} (tiles overlap by {plan_overlap(margin)} px)",
                    f"use {tname} {max(need_m, MIN_TILE) if ranges else need_m} or more, a smaller {mname}, "
                    f"or {tname} 0")
    return None


def _up(v: int, m: int) -> int:
    return -(-v // m) * m


def axis_spans(length: int, tile: int | None, overlap: int = 0, multiple: int = 1) -> list[tuple[int, int]]:
    """Evened-out ``(start, size)`` spans covering ``[0, length)`` along one axis.

    ``tile`` is the largest span (rounded down to a multiple of ``multiple``, at least
    ``multiple``); ``None`` or ``0`` means one span. Neighbouring spans overlap by at least
    ``overlap`` pixels. Every start is a multiple of ``multiple`` (so a U-Net's pooling grid
    is the whole image's) and every span but the last has the same size, a multiple of
    ``multiple``; the last span ends at the image edge and may be shorter (the runner pads it
    exactly as a whole-image run pads the image). Raises ValueError when ``tile`` is too small
    for ``overlap``.
    """
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if overlap < 0 or multiple < 1:
        raise ValueError(f"need overlap >= 0 and multiple >= 1, got {overlap}, {multiple}")
    if not tile or length <= tile:
        return [(0, length)]
    t_max = max(multiple, (int(tile) // multiple) * multiple)
    if length <= t_max:
        return [(0, length)]
    if t_max <= overlap + multiple:
        raise ValueError(f"tile size {tile} is too small for an overlap of {overlap} px "
                         f"(after rounding down to a multiple of {multiple}: {t_max})")
    n = max(2, math.ceil((length - overlap) / (t_max - overlap)))
    while True:
        size = min(t_max, _up(math.ceil((length + (n - 1) * overlap) / n), multiple))
        last = min(_up(length - size, multiple), length - 1)
        starts = [min(last, (round(i * last / (n - 1)) // multiple) * multiple) for i in range(n - 1)] + [last]
        spans = [(s, min(size, length - s)) for s in starts]
        ok = all(spans[i][0] + spans[i][1] - spans[i + 1][0] >= overlap for i in range(n - 1))
        ok = ok and all(starts[i] < starts[i + 1] for i in range(n - 1))
        if ok or n >= length:
            return spans
        n += 1


def ramp(n: int) -> np.ndarray:
    """Raised-cosine ramp of ``n`` samples rising from ~0 to ~1 (at pixel centres), float64.

    ``ramp(n) + ramp(n)[::-1] == 1`` exactly, so two tiles sharing an overlap sum to one.
    """
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _pair_weights(ov: int, margin: int) -> np.ndarray:
    """Weight (float64, length ``ov``) of the SECOND of two tiles across their overlap.

    The first ``margin`` pixels (near the second tile's border) get 0, the last ``margin``
    (near the first tile's border) get 1, and a raised-cosine ramp joins them; when the
    overlap is too short for a ramp, a hard cut in the middle.
    """
    w = np.zeros(ov, dtype=np.float64)
    r = ov - 2 * margin
    if r > 0:
        w[margin:margin + r] = ramp(r)
        w[margin + r:] = 1.0
    else:
        w[ov // 2:] = 1.0
    return w


def axis_weights(spans: list[tuple[int, int]], length: int, margin: int = 0) -> list[np.ndarray]:
    """Per-span 1-D blend weights (float32, one array of each span's size), normalised.

    Across the overlap of two neighbours, the ``margin`` pixels next to a tile's inner border
    get weight 0 for that tile (pixels a model with that receptive field cannot get right at a
    tile edge), and a raised cosine carries the weight from one tile to the other in between.
    The weights of all spans sum to 1 at every coordinate.
    """
    raw: list[np.ndarray] = []
    for i, (s, n) in enumerate(spans):
        w = np.ones(n, dtype=np.float64)
        if i > 0:
            ov = spans[i - 1][0] + spans[i - 1][1] - s
            if ov > 0:
                w[:ov] *= _pair_weights(ov, margin)
        if i + 1 < len(spans):
            ov = s + n - spans[i + 1][0]
            if ov > 0:
                w[n - ov:] *= 1.0 - _pair_weights(ov, margin)
        raw.append(w)
    total = np.zeros(length, dtype=np.float64)
    for (s, n), w in zip(spans, raw):
        total[s:s + n] += w
    if np.any(total <= 0):
        raise ValueError("tile overlaps leave pixels without weight; increase the overlap")
    return [(w / total[s:s + n]).astype(np.float32) for (s, n), w in zip(spans, raw)]


@dataclass(frozen=True)
class TilePlan:
    """Tiles covering an ``height x width`` image (row-major order) and their blend weights."""

    height: int
    width: int
    tile: int | None
    overlap: int
    multiple: int
    margin: int
    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]
    tiles: tuple[Tile, ...] = field(repr=False)
    _wy: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    _wx: tuple[np.ndarray, ...] = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def overlapping(self) -> bool:
        """Whether any two tiles share pixels (False: stitching is a plain copy)."""
        return _spans_overlap(self.rows) or _spans_overlap(self.cols)

    def weights(self, t: Tile) -> tuple[np.ndarray, np.ndarray]:
        """1-D blend weights ``(wy (t.h,), wx (t.w,))`` of tile ``t``; the 2-D weight is their outer product."""
        return self._wy[t.row], self._wx[t.col]

    def max_tile_pixels(self) -> int:
        """Pixels in the largest tile (what bounds inference memory)."""
        return max(t.h * t.w for t in self.tiles)


def _spans_overlap(spans: tuple[tuple[int, int], ...]) -> bool:
    return any(spans[i][0] + spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1))


def plan_tiles(h: int, w: int, tile: int | None, overlap: int = 0, multiple: int = 1, margin: int = 0) -> TilePlan:
    """Plan tiles of at most ``tile`` x ``tile`` pixels covering an ``h x w`` image.

    ``tile`` None or 0 gives a single tile. ``overlap`` is the least overlap between
    neighbours (pixels), ``multiple`` the size multiple the model needs, ``margin`` the
    pixels at a tile's inner borders that get no weight (a model's receptive field; the
    overlap is raised to at least ``2 * margin``). See the module docstring for the
    guarantees. Raises ValueError for impossible parameters.
    """
    overlap = max(overlap, 2 * margin)
    rows = axis_spans(h, tile, overlap, multiple)
    cols = axis_spans(w, tile, overlap, multiple)
    tiles = tuple(Tile(y0, x0, th, tw, r, c) for r, (y0, th) in enumerate(rows) for c, (x0, tw) in enumerate(cols))
    return TilePlan(height=h, width=w, tile=tile, overlap=overlap, multiple=multiple, margin=margin,
                    rows=tuple(rows), cols=tuple(cols), tiles=tiles,
                    _wy=tuple(axis_weights(rows, h, margin)), _wx=tuple(axis_weights(cols, w, margin)))


class Stitcher:
    """Accumulates tile outputs (``t.h x t.w x C``) into one ``H x W x C`` float32 image.

    Non-overlapping plans copy tiles in place; overlapping plans add each tile times its
    smooth-ramp weight. Memory: one output image plus one tile. ``out`` (optional) is a
    float32 ``H x W x C`` array to fill instead of a new one: a batch reuses one buffer per
    set in flight, because first-touch page faults of a fresh 24 MP float image cost more than
    the copying.
    """

    def __init__(self, plan: TilePlan, channels: int = 3, out: np.ndarray | None = None) -> None:
        self.plan = plan
        self._blend = plan.overlapping
        shape = (plan.height, plan.width, channels)
        if out is None:
            out = np.zeros(shape, dtype=np.float32) if self._blend else np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"stitch buffer {out.shape} {out.dtype} does not match {shape} float32")
        elif self._blend:
            out[...] = 0.0
        self.out = out
        self._added = 0

    def add(self, t: Tile, pixels: np.ndarray) -> None:
        """Add the output of tile ``t`` (float, ``t.h x t.w x C``)."""
        if pixels.shape[:2] != (t.h, t.w):
            raise ValueError(f"tile output {pixels.shape[:2]} does not match the tile size {(t.h, t.w)}")
        if not self._blend:
            self.out[t.slices] = pixels
        else:
            wy, wx = self.plan.weights(t)
            self.out[t.slices] += pixels * (wy[:, None, None] * wx[None, :, None])
        self._added += 1

    def result(self) -> np.ndarray:
        """The stitched ``H x W x C`` float32 image (raises if a tile is missing)."""
        if self._added != len(self.plan):
            raise ValueError(f"{self._added} of {len(self.plan)} tiles were added")
        return self.out


def stitch(plan: TilePlan, outputs: Iterable[np.ndarray], channels: int = 3) -> np.ndarray:
    """Stitch per-tile outputs given in plan order into an ``H x W x channels`` float32 image."""
    st = Stitcher(plan, channels)
    for t, px in zip(plan, outputs):
        st.add(t, px)
    return st.result()


def pad_to_multiple(x: np.ndarray, multiple: int, axes: tuple[int, int] = (0, 1)) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad ``x`` at the bottom/right so the two ``axes`` are multiples of ``multiple``.

    Returns ``(padded, (h, w))`` with the original sizes, to crop the result back with
    ``y[:h, :w]`` (or ``y[..., :h, :w]`` for NCHW). Sides shorter than the padding use edge
    replication instead of reflection.
    """
    h, w = x.shape[axes[0]], x.shape[axes[1]]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * x.ndim
    pad[axes[0]] = (0, ph)
    pad[axes[1]] = (0, pw)
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, pad, mode=mode), (h, w)

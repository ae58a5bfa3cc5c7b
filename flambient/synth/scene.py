"""Procedural rooms: random scene parameters and per-pixel ray casting into them.

Coordinates are metres: the floor is ``y = 0``, the ceiling ``y = ceiling``; the left and right
walls are ``x = left`` and ``x = right``; the back wall is ``z = depth``; the camera sits at
``(cam_x, cam_y, 0)`` looking down +z, turned by ``yaw`` about the vertical axis, with level
pitch (real-estate verticals stay vertical). A scene is resolution-independent: :func:`trace`
casts the rays of any pixel grid (or any band of rows of it), so a tiny preview and a 60 MP
render see the same room.

Albedos are linear sRGB reflectances in [0, 1]. Textures come from a hashed value noise
(:func:`value_noise`) evaluated in world coordinates, so they are identical in every band and
at every resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# surface ids
FLOOR, CEILING, LEFT, RIGHT, BACK, BOX, LAMP = 0, 1, 2, 3, 4, 5, 6
WALLS = (LEFT, RIGHT, BACK)


@dataclass
class Box:
    """An axis-aligned furniture block standing on the floor (metres); ``albedo`` linear RGB."""

    x0: float
    x1: float
    z0: float
    z1: float
    height: float
    albedo: tuple[float, float, float]
    kind: str  # "fabric" | "wood"


@dataclass
class Opening:
    """A rectangle on a wall: a window (exterior behind it) or a framed picture.

    ``wall`` is LEFT, RIGHT or BACK; ``a0..a1`` runs along the wall (z on side walls, x on the
    back wall), ``b0..b1`` is the height range.
    """

    wall: int
    a0: float
    a1: float
    b0: float
    b1: float
    mullions: int = 1
    seed: int = 0


@dataclass
class Scene:
    """All random parameters of one room and its lights (see :func:`random_scene`)."""

    seed: int
    fov: float  # horizontal field of view, degrees
    cam_x: float
    cam_y: float
    yaw: float  # degrees, positive turns right
    left: float
    right: float
    ceiling: float
    depth: float
    wall_albedo: tuple[float, float, float]
    accent_albedo: tuple[float, float, float]
    ceiling_albedo: tuple[float, float, float]
    floor_kind: str  # "wood" | "tile" | "carpet"
    floor_albedo: tuple[float, float, float]
    boxes: list[Box] = field(default_factory=list)
    windows: list[Opening] = field(default_factory=list)
    pictures: list[Opening] = field(default_factory=list)
    cans: list[tuple[float, float]] = field(default_factory=list)  # ceiling downlights (x, z)
    lamps: list[tuple[float, float, float]] = field(default_factory=list)  # lamp shades (x, y, z)
    daylight_k: float = 6500.0
    tungsten_k: float = 2900.0
    flash_k: float = 5500.0
    sky: float = 1.0  # exterior luminance scale
    tungsten_share: float = 0.5  # tungsten / daylight ratio of interior light (calibrated later)
    horizon: float = 0.05
    flash_offsets: list[tuple[float, float, float]] = field(default_factory=list)


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(rng.uniform(a, b))


def random_scene(seed: int, n_flash: int | None = None) -> Scene:
    """Draw a random room from ``seed`` (same seed -> same room)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E]))
    width = _u(rng, 3.6, 6.5)
    cam_x = _u(rng, -0.25, 0.25) * width
    left, right = cam_x - width / 2 - _u(rng, -0.6, 0.6), cam_x + width / 2 + _u(rng, -0.6, 0.6)
    left, right = min(left, cam_x - 1.2), max(right, cam_x + 1.2)
    depth = _u(rng, 3.5, 8.0)
    ceiling = _u(rng, 2.45, 3.3)
    paint = np.array([_u(rng, 0.55, 0.8)] * 3) * np.array([1.0, _u(rng, 0.93, 1.0), _u(rng, 0.8, 0.98)])
    accent = paint if rng.random() < 0.6 else np.array([_u(rng, 0.1, 0.6) for _ in range(3)])
    floor_kind = str(rng.choice(["wood", "tile", "carpet"], p=[0.5, 0.3, 0.2]))
    if floor_kind == "wood":
        floor = np.array([0.30, 0.18, 0.09]) * _u(rng, 0.5, 1.4)
    elif floor_kind == "tile":
        floor = np.array([0.55, 0.5, 0.43]) * _u(rng, 0.6, 1.2)
    else:
        floor = np.array([_u(rng, 0.15, 0.45) for _ in range(3)])
    sc = Scene(
        seed=int(seed), fov=_u(rng, 82, 100), cam_x=cam_x, cam_y=_u(rng, 1.25, 1.6), yaw=_u(rng, -18, 18),
        left=left, right=right, ceiling=ceiling, depth=depth,
        wall_albedo=tuple(paint), accent_albedo=tuple(accent),
        ceiling_albedo=tuple(np.array([0.82, 0.81, 0.78]) * _u(rng, 0.9, 1.05)),
        floor_kind=floor_kind, floor_albedo=tuple(np.clip(floor, 0.02, 0.9)),
        daylight_k=_u(rng, 6000, 7800), tungsten_k=_u(rng, 2700, 3200), flash_k=_u(rng, 5300, 5800),
        sky=_u(rng, 0.7, 1.6), tungsten_share=_u(rng, 0.1, 0.6), horizon=_u(rng, -0.02, 0.12),
    )
    # windows: 1-3, mostly on the back or side walls; some rooms have none
    n_win = int(rng.choice([0, 1, 2, 3], p=[0.08, 0.47, 0.33, 0.12]))
    for _ in range(n_win):
        wall = int(rng.choice([LEFT, RIGHT, BACK], p=[0.3, 0.3, 0.4]))
        span = (left + 0.3, right - 0.3) if wall == BACK else (0.8, depth - 0.3)
        w = min(_u(rng, 0.7, 1.8), span[1] - span[0] - 0.1)
        a0 = _u(rng, span[0], span[1] - w)
        b0 = _u(rng, 0.3, 1.0)
        b1 = min(ceiling - 0.15, b0 + _u(rng, 0.9, 1.7))
        if not any(o.wall == wall and o.a0 < a0 + w + 0.2 and a0 < o.a1 + 0.2 for o in sc.windows):
            sc.windows.append(Opening(wall, a0, a0 + w, b0, b1, mullions=int(rng.integers(0, 3))))
    for _ in range(int(rng.integers(0, 3))):
        wall = int(rng.choice([LEFT, RIGHT, BACK]))
        span = (left + 0.3, right - 0.3) if wall == BACK else (0.8, depth - 0.3)
        w = _u(rng, 0.4, 1.2)
        if span[1] - span[0] <= w + 0.1:
            continue
        a0 = _u(rng, span[0], span[1] - w)
        b0 = _u(rng, 1.1, 1.5)
        o = Opening(wall, a0, a0 + w, b0, min(ceiling - 0.2, b0 + w * _u(rng, 0.6, 1.0)),
                    seed=int(rng.integers(1 << 30)))
        if not any(x.wall == wall and x.a0 < o.a1 + 0.1 and o.a0 < x.a1 + 0.1 for x in sc.windows + sc.pictures):
            sc.pictures.append(o)
    for _ in range(int(rng.integers(1, 5))):
        kind = "fabric" if rng.random() < 0.55 else "wood"
        bw, bd = _u(rng, 0.5, 2.2), _u(rng, 0.4, 1.0)
        x0 = _u(rng, left + 0.05, max(left + 0.1, right - bw - 0.05))
        z0 = _u(rng, 1.8, max(1.9, depth - bd - 0.05))
        col = (np.array([_u(rng, 0.05, 0.5) for _ in range(3)]) if kind == "fabric"
               else np.array([0.25, 0.14, 0.07]) * _u(rng, 0.4, 1.3))
        sc.boxes.append(Box(x0, min(right - 0.02, x0 + bw), z0, min(depth - 0.02, z0 + bd),
                            _u(rng, 0.4, 1.0), tuple(col), kind))
    for _ in range(int(rng.integers(0, 5))):
        sc.cans.append((_u(rng, left + 0.4, right - 0.4), _u(rng, 1.0, depth - 0.4)))
    if rng.random() < 0.5:
        sc.lamps.append((_u(rng, left + 0.3, right - 0.3), _u(rng, 1.1, 1.6), _u(rng, 2.0, depth - 0.3)))
    if not sc.cans and not sc.lamps:
        sc.cans.append((_u(rng, left + 0.5, right - 0.5), _u(rng, 1.5, depth - 0.5)))
    nf = n_flash if n_flash is not None else (1 if rng.random() < 0.7 else 2)
    for i in range(nf):
        # bounced flash: effective source above and behind the camera, to one side for the 2nd pop
        side = 0.0 if i == 0 else float(rng.choice([-1.0, 1.0])) * _u(rng, 0.6, 1.2)
        sc.flash_offsets.append((side, _u(rng, 0.6, 1.0), _u(rng, -0.6, -0.2)))
    return sc


# ---------------------------------------------------------------------------------------------
# hashed value noise


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Pseudo-random float32 in [0, 1) for integer lattice points (deterministic, vectorised)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (seed * 83492791)
    h = h & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * 1274126177 & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float32, copy=False) / np.float32(1 << 24)


def value_noise(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 1) -> np.ndarray:
    """Smooth value noise in [0, 1] at real coordinates ``x, y`` (lattice spacing 1), float32."""
    out = np.zeros(np.shape(x), np.float32)
    amp, total, f = 1.0, 0.0, 1.0
    for o in range(octaves):
        xs, ys = x * f, y * f
        ix, iy = np.floor(xs), np.floor(ys)
        fx, fy = (xs - ix).astype(np.float32, copy=False), (ys - iy).astype(np.float32, copy=False)
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        s = seed + 101 * o
        a, b = _hash(ix, iy, s), _hash(ix + 1, iy, s)
        c, d = _hash(ix, iy + 1, s), _hash(ix + 1, iy + 1, s)
        out += amp * (a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy)
        total += amp
        amp *= 0.5
        f *= 2.0
    return out / np.float32(total)


# ---------------------------------------------------------------------------------------------
# ray casting


@dataclass
class Hits:
    """Per-pixel results of :func:`trace` for N rays (flat float32 arrays of length N)."""

    ox: float
    oy: float
    oz: float
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    t: np.ndarray
    sid: np.ndarray  # int8 surface id
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    box: np.ndarray  # int16 index of the box hit, -1 when none


def rays(scene: Scene, width: int, height: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit view-ray directions (dx, dy, dz), each flat float32 of (y1-y0)*width, rows y0..y1."""
    tx = np.float32(np.tan(np.radians(scene.fov) / 2))
    ty = tx * np.float32(height / width)
    u = ((np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1) * tx
    v = (1 - (np.arange(y0, y1, dtype=np.float32) + 0.5) / height * 2) * ty
    uu, vv = np.meshgrid(u, v)
    cy, sy = np.float32(np.cos(np.radians(scene.yaw))), np.float32(np.sin(np.radians(scene.yaw)))
    dx = uu * cy + sy
    dz = -uu * sy + cy
    dy = vv
    inv = 1.0 / np.sqrt(dx * dx + dy * dy + dz * dz)
    return (dx * inv).ravel(), (dy * inv).ravel(), (dz * inv).ravel()


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-7, np.float32(1e-7), d)


def inverse(dx, dy, dz):  # type: ignore[no-untyped-def]
    """Reciprocals of ray direction components (zeros nudged), for repeated slab tests."""
    return 1.0 / _safe(dx), 1.0 / _safe(dy), 1.0 / _safe(dz)


def box_entry(box: Box, ox, oy, oz, dx, dy, dz, inv=None):  # type: ignore[no-untyped-def]
    """Slab test: (t_near, t_far, axis of entry 0/1/2) for rays against ``box``.

    ``inv`` may carry :func:`inverse` of the directions, computed once for many boxes.
    """
    ix, iy, iz = inv if inv is not None else inverse(dx, dy, dz)
    ax0, ax1 = (box.x0 - ox) * ix, (box.x1 - ox) * ix
    ay0, ay1 = (0.0 - oy) * iy, (box.height - oy) * iy
    az0, az1 = (box.z0 - oz) * iz, (box.z1 - oz) * iz
    tminx, tmaxx = np.minimum(ax0, ax1), np.maximum(ax0, ax1)
    tminy, tmaxy = np.minimum(ay0, ay1), np.maximum(ay0, ay1)
    tminz, tmaxz = np.minimum(az0, az1), np.maximum(az0, az1)
    tnear = np.maximum(np.maximum(tminx, tminy), tminz)
    tfar = np.minimum(np.minimum(tmaxx, tmaxy), tmaxz)
    axis = np.where(tnear == tminx, 0, np.where(tnear == tminy, 1, 2)).astype(np.int8)
    return tnear, tfar, axis


def trace(scene: Scene, width: int, height: int, y0: int, y1: int) -> Hits:
    """Cast the view rays of rows ``y0..y1`` of a ``width`` x ``height`` image into the room."""
    dx, dy, dz = rays(scene, width, height, y0, y1)
    ox, oy, oz = scene.cam_x, scene.cam_y, 0.0
    big = np.float32(1e9)
    n = dx.size
    t = np.full(n, big, np.float32)
    sid = np.zeros(n, np.int8)
    for plane, d, o, s, cond in (
        (0.0, dy, oy, FLOOR, dy < 0), (scene.ceiling, dy, oy, CEILING, dy > 0),
        (scene.left, dx, ox, LEFT, dx < 0), (scene.right, dx, ox, RIGHT, dx > 0),
        (scene.depth, dz, oz, BACK, dz > 0),
    ):
        tp = np.where(cond, (plane - o) / _safe(d), big).astype(np.float32, copy=False)
        closer = tp < t
        t = np.where(closer, tp, t)
        sid[closer] = s
    nx = np.zeros(n, np.float32)
    ny = np.zeros(n, np.float32)
    nz = np.zeros(n, np.float32)
    ny[sid == FLOOR] = 1
    ny[sid == CEILING] = -1
    nx[sid == LEFT] = 1
    nx[sid == RIGHT] = -1
    nz[sid == BACK] = -1
    boxi = np.full(n, -1, np.int16)
    inv = inverse(dx, dy, dz) if scene.boxes else None
    for i, b in enumerate(scene.boxes):
        tn, tf, axis = box_entry(b, ox, oy, oz, dx, dy, dz, inv)
        hit = (tn <= tf) & (tn > 0) & (tn < t)
        if not hit.any():
            continue
        t = np.where(hit, tn, t)
        sid[hit] = BOX
        boxi[hit] = i
        nx[hit] = 0
        ny[hit] = 0
        nz[hit] = 0
        for a, (nn, d) in enumerate(((nx, dx), (ny, dy), (nz, dz))):
            sel = hit & (axis == a)
            nn[sel] = -np.sign(d[sel])
    for lx, ly, lz in scene.lamps:
        # lamp shade: a sphere of radius 0.18 m
        cx, cy, cz = ox - lx, oy - ly, oz - lz
        bq = dx * cx + dy * cy + dz * cz
        cq = cx * cx + cy * cy + cz * cz - 0.18**2
        disc = bq * bq - cq
        tl = -bq - np.sqrt(np.maximum(disc, 0))
        hit = (disc > 0) & (tl > 0) & (tl < t)
        t = np.where(hit, tl, t)
        sid[hit] = LAMP
    px, py, pz = ox + dx * t, oy + dy * t, oz + dz * t
    return Hits(ox, oy, oz, dx, dy, dz, t, sid, px.astype(np.float32, copy=False), py.astype(np.float32, copy=False),
                pz.astype(np.float32, copy=False), nx, ny, nz, boxi)


def wall_coords(h: Hits, wall: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): the along-wall and height coordinates of hit points (used for openings)."""
    return (h.px if wall == BACK else h.pz), h.py


def in_opening(h: Hits, o: Opening, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of hits on wall ``o.wall`` inside the rectangle (grown by ``margin``)."""
    a, b = wall_coords(h, o.wall)
    return ((h.sid == o.wall) & (a >= o.a0 - margin) & (a <= o.a1 + margin)
            & (b >= o.b0 - margin) & (b <= o.b1 + margin))

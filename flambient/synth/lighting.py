"""Materials and light transport for synthetic rooms: the separate light components of a render.

:func:`render_components` returns, for a band of rows of a ``width`` x ``height`` image, the
scene radiance (linear sRGB, arbitrary but consistent units) split by light source:

- ``day``: daylight entering through the windows, cool (``scene.daylight_k``), falling off
  into the room (each window is an area light sampled at 3x2 points, plus a bounce term);
- ``tung``: warm tungsten practicals (ceiling downlights and lamps, ``scene.tungsten_k``);
- ``emit``: the glowing fixtures themselves (downlight discs, lamp shades);
- ``ext``: the exterior seen through window glass (sky, trees, buildings), several stops
  above the interior;
- ``flash``: one array per flash pop: a bounced flash near the camera (``scene.flash_k``),
  inverse-square falloff with soft furniture shadows;
- ``mask``: window glass (1) vs interior (0), HxW.

Every component is a deterministic function of the scene and the pixel grid; the camera
(:mod:`flambient.synth.camera`) scales and mixes them into frames, the styles
(:mod:`flambient.synth.styles`) into finals. Tungsten and flash are rendered at unit power;
:func:`calibrate` sets their gains from a small preview render.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..colour import cct_to_linear_rgb, luminance
from .scene import (
    BACK,
    BOX,
    CEILING,
    FLOOR,
    LAMP,
    LEFT,
    RIGHT,
    WALLS,
    Hits,
    Scene,
    box_entry,
    in_opening,
    inverse,
    trace,
    value_noise,
)

INV_PI = np.float32(1.0 / np.pi)


def albedo(scene: Scene, h: Hits) -> np.ndarray:
    """Linear RGB reflectance of every hit, Nx3 float32 (walls, floor, furniture, pictures)."""
    n = h.t.size
    alb = np.empty((n, 3), np.float32)
    s = scene.seed
    wall = np.isin(h.sid, WALLS)
    # painted walls: faint roller texture; back wall may carry an accent colour; white skirting
    paint = np.asarray(scene.wall_albedo, np.float32)
    alb[:] = paint
    back = h.sid == BACK
    alb[back] = np.asarray(scene.accent_albedo, np.float32)
    tex = 1 + 0.04 * (value_noise(h.px * 9 + h.pz * 9, h.py * 9, s + 1, 2) - 0.5)
    alb *= tex[:, None]
    skirting = wall & (h.py < 0.09)
    alb[skirting] = 0.7
    ceil = h.sid == CEILING
    alb[ceil] = np.asarray(scene.ceiling_albedo, np.float32)
    floor = h.sid == FLOOR
    if floor.any():
        fx, fz = h.px[floor], h.pz[floor]
        base = np.asarray(scene.floor_albedo, np.float32)
        if scene.floor_kind == "wood":
            plank = np.floor(fx / 0.16)
            joint = np.floor(fz / 1.2 + 0.37 * plank)
            var = 0.75 + 0.5 * value_noise(plank * 3.1, joint * 1.7, s + 2)
            grain = 0.85 + 0.3 * value_noise(fx * 60, fz * 3, s + 3, 2)
            seam = np.minimum(np.abs(fx / 0.16 - np.round(fx / 0.16)) * 0.16, 1) < 0.004
            f = var * grain
            f[seam] *= 0.45
        elif scene.floor_kind == "tile":
            gx, gz = fx / 0.6, fz / 0.6
            grout = (np.abs(gx - np.round(gx)) < 0.012) | (np.abs(gz - np.round(gz)) < 0.012)
            f = 0.9 + 0.2 * value_noise(np.floor(gx) * 5.3, np.floor(gz) * 2.1, s + 4)
            f = f * (0.95 + 0.1 * value_noise(fx * 20, fz * 20, s + 5, 2))
            f[grout] = 0.45
        else:
            f = 0.8 + 0.4 * value_noise(fx * 120, fz * 120, s + 6, 2)
        alb[floor] = base * f[:, None]
    boxm = h.sid == BOX
    if boxm.any():
        for i, b in enumerate(scene.boxes):
            sel = boxm & (h.box == i)
            if not sel.any():
                continue
            bx, by, bz = h.px[sel], h.py[sel], h.pz[sel]
            if b.kind == "fabric":
                f = 0.85 + 0.3 * value_noise(bx * 80 + bz * 80, by * 80, s + 7 + i, 2)
            else:
                f = 0.8 + 0.4 * value_noise(bx * 4 + bz * 4, by * 70, s + 7 + i, 2)
            top = h.ny[sel] > 0.5
            f = np.where(top, f * 1.1, f)
            alb[sel] = np.asarray(b.albedo, np.float32) * f[:, None]
    for o in scene.pictures:
        inner = in_opening(h, o)
        frame = in_opening(h, o, 0.04) & ~inner
        alb[frame] = 0.06
        if inner.any():
            a = (h.px if o.wall == BACK else h.pz)[inner]
            bb = h.py[inner]
            cols = np.stack([value_noise(a * 3, bb * 3, o.seed + c, 3) for c in range(3)], axis=1)
            alb[inner] = 0.05 + 0.75 * cols**2
    for o in scene.windows:
        frame = in_opening(h, o, 0.06) & ~in_opening(h, o)
        mull = in_opening(h, o) & _mullion(h, o)
        alb[frame | mull] = 0.75
    return np.clip(alb, 0.0, 0.95)


def _mullion(h: Hits, o) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Glazing bars: ``o.mullions`` vertical bars plus one horizontal bar, 4 cm wide."""
    a = h.px if o.wall == BACK else h.pz
    bar = np.zeros(a.shape, bool)
    for k in range(1, o.mullions + 1):
        c = o.a0 + (o.a1 - o.a0) * k / (o.mullions + 1)
        bar |= np.abs(a - c) < 0.02
    if o.mullions:
        bar |= np.abs(h.py - (o.b0 + 0.62 * (o.b1 - o.b0))) < 0.02
    return bar


def glass(scene: Scene, h: Hits) -> np.ndarray:
    """Boolean mask of hits on window glass (inside a window, not on a glazing bar)."""
    m = np.zeros(h.t.size, bool)
    for o in scene.windows:
        m |= in_opening(h, o) & ~_mullion(h, o)
    return m


def exterior(scene: Scene, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Exterior radiance seen along unit directions (sky, clouds, tree line, buildings, lawn), Nx3.

    Uses the view direction only (the outside is far away), so parallax between windows is right.
    """
    s = scene.seed
    az = np.arctan2(dx, dz).astype(np.float32, copy=False)
    el = dy - np.float32(scene.horizon)
    sun = scene.sky * cct_to_linear_rgb(5600)
    zen = scene.sky * np.array([0.55, 0.75, 1.25], np.float32)
    hor = scene.sky * np.array([1.05, 1.1, 1.2], np.float32)
    k = np.clip(el * 2.2, 0, 1)[:, None]
    sky = hor * (1 - k) + zen * k
    cloud = np.clip(value_noise(az * 4, el * 10, s + 20, 3) * 1.8 - 0.8, 0, 1)[:, None]
    sky = sky * (1 - cloud) + cloud * scene.sky * 1.3
    out = sky.astype(np.float32, copy=False)
    # buildings: a few blocks in azimuth
    bh = 0.06 + 0.25 * value_noise(np.floor(az * 6), np.float32(0.5), s + 21)
    has_b = value_noise(np.floor(az * 6) * 1.7, np.float32(3.3), s + 22) > 0.55
    bmask = has_b & (el < bh) & (el > -0.05)
    if bmask.any():
        wins = (np.sin(az[bmask] * 220) > 0.3) & (np.sin(el[bmask] * 150) > 0.2)
        col = np.where(wins[:, None], np.array([0.25, 0.28, 0.33]), np.array([0.75, 0.68, 0.6]))
        out[bmask] = (col * sun * 2.5).astype(np.float32, copy=False)
    # tree line with ragged top
    th = -0.03 + 0.13 * value_noise(az * 9, np.float32(0.0), s + 23, 3)
    tmask = (el < th) & (el > -0.05)
    if tmask.any():
        leaf = 0.5 + value_noise(az[tmask] * 90, el[tmask] * 90, s + 24, 2)
        out[tmask] = (np.array([0.09, 0.17, 0.05]) * leaf[:, None] * sun * 3.5).astype(np.float32, copy=False)
    ground = el <= -0.05
    if ground.any():
        g = 0.7 + 0.6 * value_noise(az[ground] * 40, el[ground] * 60, s + 25, 2)
        out[ground] = (np.array([0.12, 0.2, 0.07]) * g[:, None] * sun * 3.0).astype(np.float32, copy=False)
    # the view out is sunlit: brighter than the diffuse sky light that reaches the interior
    return out * np.float32(2.0)


def _occluded(scene: Scene, px, py, pz, lx, ly, lz) -> np.ndarray:  # type: ignore[no-untyped-def]
    """True where a furniture block blocks the segment from the points to a light."""
    occ = np.zeros(px.shape, bool)
    if not scene.boxes:
        return occ
    dx, dy, dz = lx - px, ly - py, lz - pz
    inv = inverse(dx, dy, dz)
    for b in scene.boxes:
        tn, tf, _ = box_entry(b, px, py, pz, dx, dy, dz, inv)
        occ |= (tn <= tf) & (tn > 1e-3) & (tn < 1.0)
    return occ


def _ao(scene: Scene, h: Hits) -> np.ndarray:
    """Ambient occlusion: darkening near furniture feet, room corners and the floor line."""
    ao = np.ones(h.t.size, np.float32)
    floor = h.sid == FLOOR
    for b in scene.boxes:
        ddx = np.maximum(np.maximum(b.x0 - h.px, h.px - b.x1), 0)
        ddz = np.maximum(np.maximum(b.z0 - h.pz, h.pz - b.z1), 0)
        d = np.sqrt(ddx * ddx + ddz * ddz)
        ao = np.where(floor, ao * (1 - 0.6 * np.exp(-d / 0.18)), ao)
    edge = np.minimum.reduce([
        np.abs(h.px - scene.left), np.abs(h.px - scene.right), np.abs(h.pz - scene.depth),
        np.abs(h.py), np.abs(h.py - scene.ceiling),
    ])
    # distance to the nearest other room surface (the corner the hit point sits in)
    second = np.where(h.sid == FLOOR, np.minimum.reduce([np.abs(h.px - scene.left), np.abs(h.px - scene.right),
                                                         np.abs(h.pz - scene.depth)]), edge)
    return ao * (1 - 0.25 * np.exp(-second / 0.25)).astype(np.float32, copy=False)


@dataclass
class Components:
    """Light components of one band of rows, each (rows, width, 3) float32 linear RGB."""

    day: np.ndarray
    tung: np.ndarray
    emit: np.ndarray
    ext: np.ndarray
    flash: list[np.ndarray]
    mask: np.ndarray  # (rows, width) float32, 1 = window glass

    def ambient(self, tung_gain: float) -> np.ndarray:
        """The ambient scene: daylight + tungsten (and fixtures) at ``tung_gain`` + exterior."""
        return self.day + np.float32(tung_gain) * (self.tung + self.emit) + self.ext


# Longer than 80 lines on purpose: one render pass over a band of rows whose light components
# (daylight, tungsten, fixtures) share the hit-point arrays (positions, normals, albedo, occlusion).
def render_components(scene: Scene, width: int, height: int, y0: int = 0, y1: int | None = None) -> Components:
    """Render rows ``y0..y1`` of a ``width`` x ``height`` image into separate light components."""
    y1 = height if y1 is None else y1
    h = trace(scene, width, height, y0, y1)
    rows = y1 - y0
    alb = albedo(scene, h)
    ao = _ao(scene, h)
    win = glass(scene, h)
    n = h.t.size
    px, py, pz, nx, ny, nz = h.px, h.py, h.pz, h.nx, h.ny, h.nz
    # offset points off their surface for shadow rays
    ox, oy, oz = px + nx * 1e-3, py + ny * 1e-3, pz + nz * 1e-3

    # --- daylight through windows: area lights sampled on a 3x2 grid
    e_day = np.zeros(n, np.float32)
    total_area = 0.0
    for o in scene.windows:
        area = (o.a1 - o.a0) * (o.b1 - o.b0)
        total_area += area
        wn = {LEFT: (1.0, 0.0, 0.0), RIGHT: (-1.0, 0.0, 0.0), BACK: (0.0, 0.0, -1.0)}[o.wall]
        for i in range(3):
            for j in range(2):
                a = o.a0 + (o.a1 - o.a0) * (i + 0.5) / 3
                b = o.b0 + (o.b1 - o.b0) * (j + 0.5) / 2
                if o.wall == BACK:
                    sx, sy, sz = a, b, scene.depth
                else:
                    sx, sy, sz = (scene.left if o.wall == LEFT else scene.right), b, a
                lx, ly, lz = sx - px, sy - py, sz - pz
                # softened by the sample patch's area: irradiance stays bounded next to the glass
                d2 = lx * lx + ly * ly + lz * lz + np.float32(0.05 + area / 6)
                inv = 1.0 / np.sqrt(d2)
                cs = np.maximum(0, (nx * lx + ny * ly + nz * lz) * inv)
                cw = np.maximum(0, -(wn[0] * lx + wn[1] * ly + wn[2] * lz) * inv)
                # light from the sky side (upper sample rows) is a bit brighter
                e_day += np.float32(area / 6 * (0.85 + 0.3 * j)) * (cs * cw / d2)
    # bounce light: proportional to window area, fading towards the back of the room
    e_day = e_day + 0.02 * total_area * (1.0 - 0.08 * np.minimum(h.t, 8.0))
    e_day = e_day * np.float32(scene.sky) * ao
    day_rgb = cct_to_linear_rgb(scene.daylight_k)

    # --- tungsten: downlights (cone pointing down) and lamps (omni), plus a little bounce
    e_t = np.zeros(n, np.float32)
    for cx, cz in scene.cans:
        lx, ly, lz = cx - px, (scene.ceiling - 0.05) - py, cz - pz
        d2 = lx * lx + ly * ly + lz * lz + 0.02
        inv = 1.0 / np.sqrt(d2)
        cs = np.maximum(0, (nx * lx + ny * ly + nz * lz) * inv)
        cone = np.maximum(0, ly * inv) ** 1.5
        e_t += cs * cone / d2
    for lx0, ly0, lz0 in scene.lamps:
        lx, ly, lz = lx0 - px, ly0 - py, lz0 - pz
        d2 = lx * lx + ly * ly + lz * lz + 0.3  # a lamp shade is a broad, diffuse source
        inv = 1.0 / np.sqrt(d2)
        cs = np.maximum(0, (nx * lx + ny * ly + nz * lz) * inv)
        e_t += 0.7 * cs / d2 * np.where(_occluded(scene, ox, oy, oz, lx0, ly0, lz0), np.float32(0.3), np.float32(1.0))
    e_t = (e_t + 0.03 * (len(scene.cans) + len(scene.lamps))) * ao
    t_rgb = cct_to_linear_rgb(scene.tungsten_k)

    # fixtures: downlight discs on the ceiling and lamp shades glow
    emit = np.zeros(n, np.float32)
    for cx, cz in scene.cans:
        r2 = (px - cx) ** 2 + (pz - cz) ** 2
        on_ceiling = h.sid == CEILING
        emit += np.where(on_ceiling & (r2 < 0.07**2), np.float32(40.0), np.float32(0.0))
        emit += np.where(on_ceiling & (r2 < 0.3**2), np.float32(0.4) * np.exp(-r2 / np.float32(0.02)), 0)
    emit += np.where(h.sid == LAMP, np.float32(6.0), np.float32(0.0))

    # --- flash: bounced source above/behind the camera; soft shadows from furniture
    flashes = []
    f_rgb = cct_to_linear_rgb(scene.flash_k)
    for fx_o, fy_o, fz_o in scene.flash_offsets:
        fx, fy, fz = h.ox + fx_o, h.oy + fy_o, h.oz + fz_o
        lx, ly, lz = fx - px, fy - py, fz - pz
        d2 = lx * lx + ly * ly + lz * lz + 0.3
        inv = 1.0 / np.sqrt(d2)
        cs = 0.75 * np.maximum(0, (nx * lx + ny * ly + nz * lz) * inv) + 0.25  # bounce softens
        shadow = np.where(_occluded(scene, ox, oy, oz, fx, fy, fz), np.float32(0.35), np.float32(1.0))
        e_f = cs * shadow / d2 * (0.85 + 0.15 * ao)
        flashes.append(((alb * INV_PI) * e_f[:, None] * f_rgb).reshape(rows, width, 3).astype(np.float32, copy=False))

    interior = ~win & (h.sid != LAMP)
    rad = alb * INV_PI
    day = np.where(interior[:, None], rad * e_day[:, None] * day_rgb, 0).astype(np.float32, copy=False)
    tung = np.where(interior[:, None], rad * e_t[:, None] * t_rgb, 0).astype(np.float32, copy=False)
    emit_rgb = (emit[:, None] * t_rgb).astype(np.float32, copy=False)
    ext = np.zeros((n, 3), np.float32)
    if win.any():
        ext[win] = exterior(scene, h.dx[win], h.dy[win], h.dz[win])
    for f in flashes:
        f.reshape(n, 3)[win] = 0.0
    return Components(
        day=day.reshape(rows, width, 3), tung=tung.reshape(rows, width, 3),
        emit=emit_rgb.reshape(rows, width, 3), ext=ext.reshape(rows, width, 3), flash=flashes,
        mask=win.reshape(rows, width).astype(np.float32, copy=False),
    )


@dataclass
class Calibration:
    """Per-scene gains that set the light balance (from a preview render).

    ``tung_gain`` scales the unit-power tungsten so tungsten/daylight = ``scene.tungsten_share``
    in the median interior; ``flash_gain`` scales each unit-power flash so the flash-only
    interior median equals ``flash_to_ambient`` times the ambient interior median.
    """

    tung_gain: float
    flash_gain: float
    ambient_median: float  # median interior luminance of the (gained) ambient scene
    exterior_median: float  # median luminance of the exterior through the glass (0 if none)


def calibrate(scene: Scene, preview: Components, flash_to_ambient: float) -> Calibration:
    """Choose the tungsten and flash gains of ``scene`` from its ``preview`` components."""
    interior = preview.mask < 0.5
    ld = luminance(preview.day)[interior]
    lt = luminance(preview.tung)[interior]
    med_d = float(np.median(ld)) if ld.size else 0.0
    med_t = float(np.median(lt)) if lt.size else 0.0
    if med_d <= 1e-9:  # windowless room: tungsten only
        tung_gain = 1.0 / max(med_t, 1e-9) * 0.01
    else:
        tung_gain = scene.tungsten_share * med_d / max(med_t, 1e-9)
    amb = preview.ambient(tung_gain)
    la = luminance(amb)[interior]
    amb_med = float(np.median(la)) if la.size else 1.0
    fl = luminance(np.mean(preview.flash, axis=0))[interior]
    f_med = float(np.median(fl)) if fl.size else 1.0
    flash_gain = flash_to_ambient * amb_med / max(f_med, 1e-12)
    ext = luminance(preview.ext)[~interior]
    return Calibration(tung_gain, flash_gain, amb_med, float(np.median(ext)) if ext.size else 0.0)

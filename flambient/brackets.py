"""Bracket sets: frames of one composition, their roles and their exposure offsets.

A shoot is a stream of frames in capture order (one stream per camera). :func:`group_frames`
cuts it into sets wherever the image geometry (orientation, size, focal length) or the picture
itself changes, or where a long pause falls (:func:`judge` decides, and says why);
:func:`label_set` then gives each frame a role (``ambient``, ``flash``, ``window``) and its
exposure ``ev`` relative to the set's reference ambient frame.

Why not time alone: in a real flambient shoot the pause inside a set (ambient, then the
photographer walks to place the flash: ~50 s) is as long as the pause between two rooms
(~57 s). What reliably tells compositions apart is the picture: two frames of one set show
the same edges even when one is lit by flash and is 6 EV darker. :func:`thumb_similarity`
compares the gradient magnitude of log-luminance thumbnails (exposure changes are an offset
in log space and vanish in the gradient; lighting changes move shading but not edges).

Thumbnail similarity alone is weak evidence: unrelated rooms reach about 0.5 on real data, and frames
of one bracket 6-9 EV apart share too few pixels that are neither clipped nor black to be
compared at all. A feature match with a geometric check (:mod:`flambient.match`) is the strong
cue: it confirms one composition across 9 EV and flash, and never did for unrelated pictures in
the measurements of ``benchmarks/bench_grouping.py`` (thresholds and numbers in the README).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .colour import LUMA_WEIGHTS
from .io.exif import ExifInfo

ROLES = ("ambient", "flash", "window")

# Rec. 709 / sRGB luminance weights (linear RGB); previews of RAW files are camera RGB, for
# which these weights are close enough for structure and exposure comparisons.
_LUMA = LUMA_WEIGHTS.astype(np.float32)


@dataclass
class GroupingConfig:
    """Knobs of grouping and labelling (defaults tuned on real shoots; all documented in README).

    Grouping breaks between two consecutive frames of one camera when any of these says "new
    composition": a different orientation or image size; focal lengths differing by more than
    ``focal_tolerance`` (relative); a set already holding ``max_set_size`` frames. Then, unless a
    feature match confirms one composition (``min_inliers`` inliers, corners moved at most
    ``max_drift`` of the diagonal): frames without capture time and exposure EXIF; a pause longer
    than ``max_gap_s``; an ambient frame repeating an exposure the set already holds after its
    flash frames (``split_on_repeated_ambient``); a thumbnail similarity below
    ``min_similarity`` to every frame of the set (``min_similarity_expected`` for a flash or
    window-pull frame the set still lacks). A similarity between ``min_similarity`` and
    ``sure_similarity`` without confirmation joins "unsure" (a warning). ``use_exif_geometry``,
    ``use_thumbnails`` and ``use_features`` switch kinds of evidence off for experiments.
    """

    max_gap_s: float = 300.0
    focal_tolerance: float = 0.01
    min_similarity: float = 0.35
    #: Lower bar for the frame EXIF says the set still lacks (its flash or its window pull).
    min_similarity_expected: float = 0.15
    #: A non-flash frame at an exposure the set already has, after its flash frames, starts a set.
    split_on_repeated_ambient: bool = True
    max_set_size: int = 12
    thumb_size: int = 64
    max_shift: int = 2
    use_exif_geometry: bool = True
    use_thumbnails: bool = True
    #: A non-flash frame at least this many EV darker than the reference ambient is a window pull.
    window_ev: float = 2.0
    #: Flash fallback without EXIF: centre-minus-border log-ratio (natural log) a frame needs.
    flash_falloff: float = 0.1
    #: Frames of another camera where the main one shot brackets: "error" (reported, left out) or "split".
    mixed_cameras: str = "error"
    #: Preview long edge in pixels used for labelling and alignment.
    preview_size: int = 512
    #: Estimated shift (full-resolution pixels) below which a set counts as shot on a tripod.
    tripod_px: float = 1.0
    #: Feature matching (:mod:`flambient.match`) as evidence of one composition.
    use_features: bool = True
    #: Long edge (pixels) of the images features are detected on.
    match_size: int = 384
    #: A feature match confirms one composition with at least this many RANSAC inliers ...
    min_inliers: int = 20
    #: ... and a transform moving no image corner more than this fraction of the diagonal.
    max_drift: float = 0.03
    #: Thumbnail similarity that joins without feature confirmation (frames with EXIF only).
    sure_similarity: float = 0.6

    def to_dict(self) -> dict[str, Any]:
        """YAML-safe copy of the settings (recorded in the manifest)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GroupingConfig:
        """Build from a dict, ignoring unknown keys."""
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Alignment:
    """Global registration of a frame onto its set's reference frame.

    ``matrix`` is the 2x3 affine map from reference pixel coordinates to this frame's pixel
    coordinates, at full resolution (``cv2.warpAffine(frame, matrix, ..., WARP_INVERSE_MAP)``
    resamples the frame onto the reference grid). ``shift_px`` is the translation magnitude
    and ``rotation_deg`` the rotation; ``residual`` is ``1 - NCC`` of the frames' log-luminance
    gradients after alignment (0 = identical structure); ``applied`` is False for tripod sets.
    """

    matrix: list[list[float]]
    shift_px: float
    rotation_deg: float
    residual: float
    applied: bool

    def to_dict(self) -> dict[str, Any]:
        """YAML-safe dict."""
        return {
            "matrix": [[float(f"{v:.6g}") for v in row] for row in self.matrix],
            "shift_px": round(float(self.shift_px), 3),
            "rotation_deg": round(float(self.rotation_deg), 4),
            "residual": round(float(self.residual), 4),
            "applied": bool(self.applied),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Alignment | None:
        """Inverse of :meth:`to_dict`; None stays None."""
        if not d:
            return None
        return cls(matrix=[list(map(float, r)) for r in d["matrix"]], shift_px=float(d["shift_px"]),
                   rotation_deg=float(d["rotation_deg"]), residual=float(d["residual"]),
                   applied=bool(d["applied"]))


@dataclass
class Frame:
    """One input file of a shoot.

    ``path`` is absolute; ``height``/``width`` the full decoded size (as displayed);
    ``size``/``mtime`` identify the file's version; ``ev`` is log2 of the light this frame
    gathered relative to the set's reference frame (normalise with ``frame * 2**-ev``);
    ``preview`` is a small linear HxWx3 image, float16 or float32 (not stored in the manifest).
    """

    path: Path
    exif: ExifInfo = field(default_factory=ExifInfo)
    fmt: str = ""
    height: int = 0
    width: int = 0
    size: int = 0
    mtime: float = 0.0
    role: str = "ambient"
    ev: float = 0.0
    ev_source: str = "exif"
    role_source: str = "exif"
    align: Alignment | None = None
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def stem(self) -> str:
        """File name without extension."""
        return self.path.stem


@dataclass
class BracketSet:
    """Frames of one composition; ``reference`` indexes the reference ambient frame."""

    name: str
    frames: list[Frame]
    reference: int = 0
    handheld: bool = False

    @property
    def reference_frame(self) -> Frame:
        """The frame every other one is exposure-normalised and aligned to."""
        return self.frames[self.reference]

    def frames_with_role(self, role: str) -> list[Frame]:
        """Frames labelled ``role`` in capture order."""
        return [f for f in self.frames if f.role == role]

    @property
    def window_frame(self) -> Frame | None:
        """The darkest window-pull frame, or None."""
        wins = self.frames_with_role("window")
        return min(wins, key=lambda f: f.ev) if wins else None

    def stack_frames(self) -> tuple[Frame, list[Frame], Frame | None]:
        """``(ambient reference, flash frames, window frame)``: what the model stack uses."""
        return self.reference_frame, self.frames_with_role("flash"), self.window_frame

    def ambient_frames(self) -> list[Frame]:
        """The non-flash frames merged into the ambient channel, the reference first.

        Every non-flash frame except the window pull (:attr:`window_frame`, which keeps its
        own channel): one frame for a classic flambient set, several for an exposure bracket
        (see :mod:`flambient.hdr`).
        """
        ref, win = self.reference_frame, self.window_frame
        return [ref] + [f for f in self.frames if f.role != "flash" and f is not ref and f is not win]


# ----------------------------------------------------------------------------- thumbnails


def luminance_thumb(preview: np.ndarray, size: int = 64) -> np.ndarray:
    """Linear luminance HxW float32 thumbnail with long edge ``size`` from a linear preview."""
    import cv2

    y = np.asarray(preview[:, :, :3], dtype=np.float32) @ _LUMA
    h, w = y.shape
    s = size / max(h, w)
    if s < 1.0:
        y = cv2.resize(y, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return y


def log_gradient(thumb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(magnitude, valid)`` HxW float32 for a linear luminance thumbnail.

    ``magnitude`` is the (lightly blurred) Sobel gradient magnitude of log-luminance: an
    exposure change is an additive offset in log space and drops out. ``valid`` marks pixels
    neither clipped nor black (eroded by one pixel), where that holds.
    """
    import cv2

    valid = ((thumb > 2e-3) & (thumb < 0.95)).astype(np.float32)
    logy = np.log(np.maximum(thumb, 1e-4)).astype(np.float32)
    gx = cv2.Sobel(logy, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(logy, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.GaussianBlur(np.hypot(gx, gy), (3, 3), 0.8)
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8))
    return mag, valid


def thumb_similarity(a: np.ndarray, b: np.ndarray, max_shift: int = 2) -> float:
    """Exposure-invariant similarity in [-1, 1] of two luminance thumbnails (HxW, linear).

    Normalised cross-correlation of log-luminance gradient magnitude over pixels valid in
    both, maximised over integer shifts up to ``max_shift`` (handheld framing drift).
    Thumbnails of different shape are not comparable and score -1.
    """
    if a.shape != b.shape:
        return -1.0
    ga, va = log_gradient(a)
    gb, vb = log_gradient(b)
    h, w = a.shape
    best = -1.0
    m = max_shift
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            ys, xs = slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx))
            yt, xt = slice(max(0, -dy), h + min(0, -dy)), slice(max(0, -dx), w + min(0, -dx))
            wgt = va[ys, xs] * vb[yt, xt]
            n = wgt.sum()
            if n < 0.2 * h * w:
                continue
            p, q = ga[ys, xs], gb[yt, xt]
            pm, qm = (p * wgt).sum() / n, (q * wgt).sum() / n
            pc, qc = (p - pm) * wgt, (q - qm) * wgt
            den = math.sqrt(float((pc * pc).sum()) * float((qc * qc).sum())) + 1e-12
            best = max(best, float((pc * qc).sum()) / den)
    return best


# ----------------------------------------------------------------------------- grouping


def capture_seconds(dt: datetime | None) -> float | None:
    """Seconds since 1970 of a capture time read as camera-local wall time (None passes)."""
    if dt is None:
        return None
    return (dt.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds()


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def order_frames(frames: list[Frame]) -> list[Frame]:
    """Capture order: by EXIF time when every frame has one, else by natural file-name order."""
    if frames and all(f.exif.capture_time is not None for f in frames):
        return sorted(frames, key=lambda f: (capture_seconds(f.exif.capture_time), _natural_key(f.path)))
    return sorted(frames, key=lambda f: _natural_key(f.path))


def _expected_next(cur: list[Frame], nxt: Frame, cfg: GroupingConfig) -> bool:
    """True when EXIF says ``nxt`` is the kind of frame ``cur`` still lacks.

    A flash frame after a set without one, or a much darker non-flash frame (window pull)
    after a set without one: bracket sets are shot in that order, and such frames look least
    like the ambient frame, so they get the lower similarity bar.
    """
    if nxt.exif.flash_fired is None:
        return False
    if nxt.exif.flash_fired:
        return not any(f.exif.flash_fired for f in cur)
    ev_n = nxt.exif.exposure_value()
    amb = [f.exif.exposure_value() for f in cur if f.exif.flash_fired is False]
    amb = [v for v in amb if v is not None]
    return ev_n is not None and bool(amb) and ev_n <= max(amb) - cfg.window_ev and \
        not any(v <= max(amb) - cfg.window_ev for v in amb)


def _repeats_ambient(cur: list[Frame], nxt: Frame) -> bool:
    """True when ``nxt`` is a non-flash frame at an exposure the set already holds, after a flash.

    Photographers shoot ambient then flash (then window); an ambient frame at the same
    exposure again after the flash frames is the next room's first frame.
    """
    if nxt.exif.flash_fired is not False or not any(f.exif.flash_fired for f in cur):
        return False
    ev_n = nxt.exif.exposure_value()
    if ev_n is None:
        return False
    return any(f.exif.flash_fired is False and f.exif.exposure_value() is not None
               and abs(f.exif.exposure_value() - ev_n) < 0.5 for f in cur)  # type: ignore[operator]


def has_shoot_exif(f: Frame) -> bool:
    """True when ``f`` carries a capture time or an exposure time (what relates bracket frames).

    Exported merges and edited images usually carry neither: then only the pictures can say
    whether two files show one composition.
    """
    return f.exif.capture_time is not None or f.exif.exposure_value() is not None


def _same_exposure_and_flash(a: Frame, b: Frame) -> bool:
    """True when EXIF says ``a`` and ``b`` were taken alike (same flash state, within 0.5 EV)."""
    ea, eb = a.exif.exposure_value(), b.exif.exposure_value()
    return (ea is not None and eb is not None and abs(ea - eb) < 0.5
            and a.exif.flash_fired is not None and a.exif.flash_fired == b.exif.flash_fired)


@dataclass
class Decision:
    """Why a frame joined the set before it (``joined``) or started a new set.

    ``cues`` holds the evidence that was measured: ``pause_s`` (capture-time gap to the
    previous frame), ``similarity`` (best :func:`thumb_similarity` to the set), ``inliers`` and
    ``drift`` (best feature match, :mod:`flambient.match`). ``sure`` is False for a join the
    evidence supports only weakly (a similar picture that features do not confirm).
    """

    frame: Frame
    joined: bool
    reason: str
    cues: dict[str, Any] = field(default_factory=dict)
    sure: bool = True


class Evidence:
    """Picture evidence of frames, computed once per frame and cached (thumbnails, features)."""

    def __init__(self, cfg: GroupingConfig) -> None:
        self.cfg = cfg
        self._thumbs: dict[int, np.ndarray] = {}
        self._feats: dict[int, tuple[Any, tuple[int, int]]] = {}

    def thumb(self, f: Frame) -> np.ndarray | None:
        """The luminance thumbnail of ``f`` (None without a preview)."""
        if f.preview is None:
            return None
        if id(f) not in self._thumbs:
            self._thumbs[id(f)] = luminance_thumb(f.preview, self.cfg.thumb_size)
        return self._thumbs[id(f)]

    def similarity(self, cur: list[Frame], nxt: Frame) -> float | None:
        """Best thumbnail similarity of ``nxt`` to a frame of ``cur`` (None when not measurable)."""
        tn = self.thumb(nxt)
        if tn is None:
            return None
        sims = [thumb_similarity(t, tn, self.cfg.max_shift) for t in map(self.thumb, cur) if t is not None]
        return max(sims) if sims else None

    def _features(self, f: Frame) -> tuple[Any, tuple[int, int]] | None:
        from .match import features, match_image

        if f.preview is None:
            return None
        if id(f) not in self._feats:
            img = match_image(f.preview, self.cfg.match_size)
            self._feats[id(f)] = (features(img), img.shape)
        return self._feats[id(f)]

    def match(self, cur: list[Frame], nxt: Frame) -> Any:
        """Best :class:`flambient.match.MatchResult` of ``nxt`` against the frames of ``cur``.

        Frames are tried from the closest exposure (EXIF) and the newest first; the search
        stops at the first match that confirms one composition. None without previews.
        """
        from .match import MatchResult, feature_match

        fb = self._features(nxt)
        if fb is None:
            return None
        ev_n = nxt.exif.exposure_value()

        def closeness(k: int) -> tuple[float, int]:
            ev = cur[k].exif.exposure_value()
            return (abs(ev - ev_n) if ev is not None and ev_n is not None else 0.0, -k)

        best: MatchResult | None = None
        for k in sorted(range(len(cur)), key=closeness):
            fa = self._features(cur[k])
            if fa is None or fa[1] != fb[1]:
                continue
            m = feature_match(fa[0], fb[0], fb[1])
            if best is None or (self.confirms(m), m.inliers) > (self.confirms(best), best.inliers):
                best = m
            if self.confirms(m):
                break
        return best

    def confirms(self, m: Any) -> bool:
        """True when a match says one composition: enough inliers, transform close to identity."""
        return m is not None and m.inliers >= self.cfg.min_inliers and m.drift <= self.cfg.max_drift


def judge(cur: list[Frame], nxt: Frame, cfg: GroupingConfig, evidence: Evidence | None = None) -> Decision:
    """Decide whether ``nxt`` joins the set ``cur`` (frames of one camera, in capture order).

    Hard splits: a full set, another camera, another image size or orientation, another focal
    length. Then the evidence, strongest first: a feature match that confirms one composition
    (:meth:`Evidence.confirms`) joins even across a long pause, a repeated ambient exposure or
    a thumbnail similarity ruined by a large exposure difference (a wide tripod bracket).
    Frames without capture time and exposure EXIF join only on that confirmation. Otherwise
    a pause over ``max_gap_s`` or a repeated ambient exposure splits; a similarity of at least
    ``sure_similarity`` joins; one between ``min_similarity`` and ``sure_similarity`` joins
    unsure, except that two frames EXIF says were taken alike need the confirmation.
    """
    ev = evidence or Evidence(cfg)
    prev = cur[-1]
    cues: dict[str, Any] = {}

    def split(reason: str) -> Decision:
        return Decision(nxt, False, reason, cues)

    def join(reason: str, sure: bool = True) -> Decision:
        return Decision(nxt, True, reason, cues, sure)

    ta, tb = capture_seconds(prev.exif.capture_time), capture_seconds(nxt.exif.capture_time)
    if ta is not None and tb is not None:
        cues["pause_s"] = round(tb - ta, 2)
    if len(cur) >= cfg.max_set_size:
        return split("set full")
    if prev.exif.camera and nxt.exif.camera and prev.exif.camera != nxt.exif.camera:
        return split("camera changed")
    if (prev.height > prev.width) != (nxt.height > nxt.width) or (prev.height, prev.width) != (nxt.height, nxt.width):
        return split("orientation or size changed")
    if cfg.use_exif_geometry:
        fa, fb = prev.exif.focal_length, nxt.exif.focal_length
        if fa and fb and abs(fa - fb) > cfg.focal_tolerance * max(fa, fb):
            return split(f"focal length {fa:g} -> {fb:g} mm")
    sim = ev.similarity(cur, nxt) if cfg.use_thumbnails else None
    if sim is not None:
        cues["similarity"] = round(sim, 3)
    checked: list[bool] = []

    def confirmed() -> bool:
        if not checked:
            m = ev.match(cur, nxt) if (cfg.use_thumbnails and cfg.use_features) else None
            if m is not None:
                cues["inliers"], cues["drift"] = int(m.inliers), round(float(m.drift), 4)
            checked.append(ev.confirms(m))
        return checked[0]

    if not (has_shoot_exif(prev) and has_shoot_exif(nxt)):
        if confirmed():
            return join("features confirm one composition")
        if not (cfg.use_thumbnails and cfg.use_features) and sim is not None and sim >= cfg.sure_similarity:
            return join("similar pictures (features off)", sure=False)
        return split("no capture time or exposure EXIF, and features do not confirm one composition")
    if "pause_s" in cues and cues["pause_s"] > cfg.max_gap_s:
        if confirmed():
            return join(f"pause of {cues['pause_s']:.0f} s, but features confirm one composition")
        return split(f"pause of {cues['pause_s']:.0f} s")
    if cfg.split_on_repeated_ambient and _repeats_ambient(cur, nxt):
        if confirmed():
            return join("ambient exposure repeated, but features confirm one composition")
        return split("ambient frame again after the flash frames")
    if sim is None:
        return join("EXIF and capture time (pictures not compared)")
    if sim >= cfg.sure_similarity:
        return join("similar pictures")
    bar = cfg.min_similarity_expected if _expected_next(cur, nxt, cfg) else cfg.min_similarity
    if sim >= bar:
        if confirmed():
            return join("features confirm one composition")
        if _same_exposure_and_flash(prev, nxt):
            return split(f"taken alike and only weakly similar (similarity {sim:.2f} < {cfg.sure_similarity:.2f}), "
                         "features do not confirm")
        return join(f"weakly similar pictures (similarity {sim:.2f}), features do not confirm", sure=False)
    if confirmed():
        return join(f"features confirm one composition (similarity {sim:.2f}: exposures far apart)")
    return split(f"different picture (similarity {sim:.2f} < {bar:.2f})")


def break_reason(cur: list[Frame], nxt: Frame, cfg: GroupingConfig,
                 evidence: Evidence | None = None) -> str | None:
    """Why ``nxt`` cannot join the set ``cur`` (a short reason), or None when it belongs (see :func:`judge`)."""
    d = judge(cur, nxt, cfg, evidence)
    return None if d.joined else d.reason


def group_frames(frames: list[Frame], cfg: GroupingConfig | None = None,
                 decisions: list[Decision] | None = None) -> list[list[Frame]]:
    """Split frames (any order) into bracket sets of consecutive frames in capture order.

    Each camera's frames form their own stream (frames without a camera name one more), so a
    frame of another camera shot in the middle of a bracket does not cut it in two. Sets come
    back in the capture order of their first frames. ``decisions``, when given, receives one
    :class:`Decision` per frame (the first frame of a stream: "first frame").
    """
    cfg = cfg or GroupingConfig()
    ordered = order_frames(frames)
    position = {id(f): k for k, f in enumerate(ordered)}
    streams: dict[str | None, list[Frame]] = {}
    for f in ordered:
        streams.setdefault(f.exif.camera, []).append(f)
    evidence = Evidence(cfg)
    groups: list[list[Frame]] = []
    for stream in streams.values():
        stream_groups: list[list[Frame]] = []
        for f in order_frames(stream):
            d = judge(stream_groups[-1], f, cfg, evidence) if stream_groups else Decision(f, False, "first frame")
            if d.joined:
                stream_groups[-1].append(f)
            else:
                stream_groups.append([f])
            if decisions is not None:
                decisions.append(d)
        groups.extend(stream_groups)
    if decisions is not None:
        decisions.sort(key=lambda d: position[id(d.frame)])
    return sorted(groups, key=lambda g: position[id(g[0])])


# ----------------------------------------------------------------------------- labelling


def flash_falloff(base: np.ndarray, other: np.ndarray) -> float:
    """How much more ``other`` falls off from centre to border than ``base`` (natural log units).

    Both are linear luminance HxW of one composition. An on-camera or bounced flash lights
    near, central objects far more than the far, peripheral ones (inverse-square falloff and
    beam angle), so ``log(other / base)`` is higher in the centre than at the border when
    ``other`` is the flash frame. Returns median(centre) - median(border) of that log-ratio,
    over pixels neither clipped nor black in both; 0 when too few pixels are usable.
    """
    h, w = base.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - (h - 1) / 2) / (h / 2), (xx - (w - 1) / 2) / (w / 2))
    valid = (base > 1e-3) & (other > 1e-3) & (base < 0.95) & (other < 0.95)
    d = np.log(np.maximum(other, 1e-4)) - np.log(np.maximum(base, 1e-4))
    centre, border = valid & (r < 0.5), valid & (r > 0.9)
    if centre.sum() < 20 or border.sum() < 20:
        return 0.0
    return float(np.median(d[centre]) - np.median(d[border]))


def pixel_exposure_ratio(base: np.ndarray, other: np.ndarray) -> float | None:
    """log2 of the median brightness ratio ``other / base`` (luminance HxW, same size), or None."""
    valid = (base > 5e-3) & (other > 5e-3) & (base < 0.9) & (other < 0.9)
    if valid.sum() < 0.02 * base.size:
        return None
    return float(np.median(np.log2(other[valid] / base[valid])))


_FLASH_NAME = re.compile(r"(^|[_\-. ])(flash)($|[_\-. ])", re.IGNORECASE)


def label_set(frames: list[Frame], cfg: GroupingConfig | None = None) -> int:
    """Give every frame of one set a ``role``, ``ev`` and their sources; returns the reference index.

    Roles: EXIF "flash fired" when any frame of the set carries the flash tag; otherwise the
    pixel rule of :func:`flash_falloff` (a frame whose centre-to-border falloff relative to
    the others exceeds ``cfg.flash_falloff``), and only when pixels cannot tell, a ``flash``
    token in the file name. Reference: the non-flash frame at the upper median of exposure.
    Window pull: a non-flash frame at least ``cfg.window_ev`` darker than the reference.
    ``ev`` comes from EXIF exposure time, ISO and aperture, or from pixels when missing.
    A one-frame set is an ambient frame at 0 EV.
    """
    cfg = cfg or GroupingConfig()
    n = len(frames)
    if n == 1:
        f = frames[0]
        f.role, f.ev, f.ev_source, f.role_source = "ambient", 0.0, "single", "single"
        return 0
    thumbs = [luminance_thumb(f.preview, 128) if f.preview is not None else None for f in frames]
    _assign_flash(frames, thumbs, cfg)
    absolute = _absolute_exposures(frames, thumbs)
    non_flash = [i for i in range(n) if frames[i].role != "flash"]
    if not non_flash:  # only flash frames: the brightest stands in as the ambient reference
        ref = max(range(n), key=lambda i: absolute[i])
        frames[ref].role = "ambient"
        non_flash = [ref]
    order = sorted(non_flash, key=lambda i: (absolute[i], i))
    ref = order[len(order) // 2]
    for i, f in enumerate(frames):
        f.ev = float(absolute[i] - absolute[ref])
        if f.role != "flash":
            f.role = "window" if (i != ref and f.ev <= -cfg.window_ev) else "ambient"
    frames[ref].ev = 0.0
    return ref


def _assign_flash(frames: list[Frame], thumbs: list[np.ndarray | None], cfg: GroupingConfig) -> None:
    if any(f.exif.flash_fired is not None for f in frames):
        for f in frames:
            f.role = "flash" if f.exif.flash_fired else "ambient"
            f.role_source = "exif"
        return
    n = len(frames)
    scores = [0.0] * n
    usable = all(t is not None for t in thumbs) and len({t.shape for t in thumbs if t is not None}) == 1
    if usable:
        for j in range(n):
            vals = [flash_falloff(thumbs[i], thumbs[j]) for i in range(n) if i != j]  # type: ignore[arg-type]
            scores[j] = float(np.median(vals))
    for j, f in enumerate(frames):
        f.role = "flash" if scores[j] > cfg.flash_falloff else "ambient"
        f.role_source = "pixels"
    if not any(f.role == "flash" for f in frames):
        named = [f for f in frames if _FLASH_NAME.search(f.stem)]
        if named and len(named) < n:
            for f in named:
                f.role, f.role_source = "flash", "name"


def _absolute_exposures(frames: list[Frame], thumbs: list[np.ndarray | None]) -> list[float]:
    """log2 light gathered by each frame, on one scale: EXIF where present, else from pixels."""
    exif_ev = [f.exif.exposure_value() for f in frames]
    # A missing f-number or ISO must not look like an exposure change inside one set.
    known = [i for i, v in enumerate(exif_ev) if v is not None]
    out: list[float] = [0.0] * len(frames)
    anchor = known[0] if known else 0
    for i, f in enumerate(frames):
        if exif_ev[i] is not None:
            out[i] = float(exif_ev[i])  # type: ignore[arg-type]
            f.ev_source = "exif"
            continue
        ratio = None
        if thumbs[i] is not None and thumbs[anchor] is not None and thumbs[i].shape == thumbs[anchor].shape:  # type: ignore[union-attr]
            ratio = pixel_exposure_ratio(thumbs[anchor], thumbs[i])  # type: ignore[arg-type]
        base = float(exif_ev[anchor]) if exif_ev[anchor] is not None else 0.0  # type: ignore[arg-type]
        out[i] = base + (ratio if ratio is not None else 0.0)
        f.ev_source = "pixels" if ratio is not None else "unknown"
    return out


# ----------------------------------------------------------------------------- names


def safe_name(text: str) -> str:
    """A filesystem-safe set name: letters, digits, ``-`` and ``_`` only (never empty)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")
    return s[:80] or "set"


def name_sets(groups: list[list[Frame]]) -> list[str]:
    """Stable, unique, filesystem-safe names from each set's first frame's stem."""
    names: list[str] = []
    seen: set[str] = set()
    for g in groups:
        base = safe_name(g[0].stem)
        name, k = base, 2
        while name.lower() in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name.lower())
        names.append(name)
    return names

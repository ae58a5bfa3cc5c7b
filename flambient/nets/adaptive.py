"""`adaptive` family (the default): a bounded, image-adaptive global edit plus a small local gain.

Designed so that a real photograph cannot be made worse by an obvious fault, whatever the
weights (the "safe by construction" properties, each tested in ``tests/test_adaptive.py``):

- **exposure** is measured from the image itself (log-average luminance of the unclipped
  pixels of the base image) and moved toward a learned key by a bounded number of stops
  (``ev_range``); a single image (one merged exposure, no flash or window frame) is never
  darkened by more than ``single_ev_floor`` (0.2) stops by the exposure, the local gain and the
  tone curve together (the exposure is raised until the curve's output keeps that much of the
  source's mean luminance, then the local grid is lifted uniformly until it does too); a
  bracket set is never darkened by more than ``bracket_ev_floor`` stops against its ambient
  frame on the ambient's unclipped pixels (its windows may rightly come down; 1.0 for a new
  model, 0.6 in the shipped default since its stage 6, 0.5 since stage 7, 0.2 since its re-run:
  at a stop under, real shoots greyed), unless holding that floor would turn more than
  :data:`HIGHLIGHT_BLOWN_MAX` of the ambient's recorded pixels white: then the floor gives way,
  at most down to ``bracket_highlight_floor`` (0.5 in the shipped default);
- **white balance** is a grey-world estimate on the base image, applied with a learned
  strength and a bounded learned bias (gains in [0.5, 2], luminance kept); in a flash set the
  ambient frame is first balanced on its own (:func:`ambient_cast`: the ambient light's colour
  measured against the flash frame, a learned share of it taken out, gains in [0.25, 4]), so
  the tungsten cast goes and the materials keep the colour the flash records;
- **tone** is one monotone curve on encoded luminance (``curve_knots`` segments, positive
  slopes, 0 -> 0, white after the exposure (encoded 1) -> :data:`WHITE_POINT`, its end -> 1):
  no banding from inverted steps, no channel crossing; RGB are scaled by the luminance ratio,
  so hue is kept. A bracket set's curve rises at least ``bracket_view_slope`` times over its
  brightest quarter (:meth:`AdaptiveNet.view_slope_floor`), so window views keep their
  contrast; with ``bracket_curve_ratio`` R, neighbouring segments of its rise to white differ
  in slope by at most a factor R (:meth:`AdaptiveNet.bracket_slopes`): no plateau that flattens
  a band of wall tones, no sudden steepening that pushes near-whites to white. The white is the
  exposed one: an exposure that darkens (most bracket sets of the shipped default: -0.2 to -1.6
  stops on the real flash sets) takes the source's white below encoded 1, so it comes out grey
  (README, "On a real shoot": the greyed upper tones);
- **colour** is a near-identity 3 x 3 matrix whose rows sum to 1 (grey stays grey) and one
  saturation factor, both bounded;
- **gamut**: each pixel is pulled toward its own grey until every channel lies in [0, 1]
  (hue kept; never a clipped channel that tints a highlight);
- **neutral highlights**: where the source is bright and neutral (a clipped window or lamp),
  the output is forced to grey, so white never changes hue;
- **local** edits (window pulls, shadow lift) are a bilateral grid of luminance gains,
  bounded to ``local_ev`` stops, falling with luminance slowly enough that local contrast is
  at least halved, never inverted (no blotches), and sliced at absolute image coordinates
  (tile-exact);
- **window pull**: where a window-pull frame fills the ambient's clipped pixels with a view
  (:func:`daylight_candidates`: not a lamp's colour; :func:`view_region`: connected to pixels
  the window frame records at least :data:`VIEW_WHITE` times the ambient's white), that view is
  scaled toward a learned level (``window_key``, a learned share ``window_strength`` plus a
  bounded per-image correction), only ever darker, by at most :data:`WINDOW_EV_MIN` stops,
  before it is blended in. Lamps, their glare and clipped surfaces of the room keep their
  radiance. Sets without a window frame and single images are untouched.

Frames of a bracket set are combined per pixel before the edit: where the ambient frame is
near clipping, its radiance comes from the window-pull frame (else the flash frame, at most
:data:`FLASH_FILL_MAX` times the ambient's value there; both exposure-normalised, so they carry
the unclipped view), and the flash light (the flash frame times the share of its luminance the
ambient does not explain) is added with a learned, image-adaptive weight relative to the
ambient's brightness. Single images (one merged exposure) are the case without flash or
window frame.

``context(low)`` returns one flat vector per image (layout in :meth:`AdaptiveNet.unpack`):
every global quantity (flash weight, white-balance gains, exposure gain, curve slopes,
saturation, colour matrix, window-pull gain and view floor), the local grid and the view map. ``apply`` is per pixel given that vector and ``pos``.

Single images and bracket sets share one style plus a few single-image offsets
(:data:`SINGLE_STYLE`: curve, key, exposure and white-balance strengths, saturation, colour
matrix), because a
single merged photograph is already rendered by a camera or an HDR merge while a bracket's
ambient frame is raw ambient light.

Parameters split in two groups for fine-tuning (:meth:`AdaptiveNet.style_parameters`): the
*style* (81 numbers: curve, key, strengths, biases, matrix, the single-image offsets, the
window pull's key and strength, the ambient white balance's share)
that a few pairs determine,
and the image-adaptive CNN that predicts bounded per-image corrections and the local grid,
trained only when there are many pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import colour
from ..colour import srgb_decode_unsigned, srgb_encode_into
from ..stack import AMBIENT, FLASH, HAS_FLASH, HAS_WINDOW, WINDOW, is_single_image
from .layers import conv_act, luma, pixel_index_grids, torch_threads
from .registry import ENCODE_MAX, FlambientNet, ModelSpec, encode_rgb, encode_stack, register

SPEC = ModelSpec(
    family="adaptive",
    description="bounded image-adaptive exposure/WB/curve/colour + local gain grid (default; safe on real photos)",
    size_multiple=1,
    tileable=True,
    overlap=0,
    context_size=256,
    half_precision=False,
    tile_exact=True,
    exportable=True,
    export_note="context and apply export separately; the curve and grid lookups are Gathers and matmuls",
    style_lr=0.03,
)

#: Encoded-luminance value where the tone curve reaches 1 (encode(4.9) ~= 2: 2.3 EV above white).
CURVE_U_MAX = 2.0
#: Output the tone curve gives the source's white (encoded 1): white stays white whatever the
#: weights; everything brighter (windows, lamps) shares the last 2 %, unless the local gain
#: brings it down first.
WHITE_POINT = 0.98
#: Encoded input (after the exposure, 0-1 = black to the exposed white) from which a bracket
#: set's tone curve keeps at least ``bracket_view_slope`` (:meth:`AdaptiveNet.view_slope_floor`).
VIEW_TONES_FROM = 0.75
#: Steps of :meth:`AdaptiveNet.trace_tones`, in order: the merged frames (ambient white-balanced,
#: clipped pixels filled), plus the flash light, after white balance / colour matrix / exposure,
#: after the local gain grid, after the tone curve.
TONE_STAGES = ("merge", "flash", "exposure", "local", "tone")
#: Pixels per chunk of ``apply`` at inference (bounds the D x chunk slice buffer).
CHUNK_PIXELS = 1 << 16
#: Ambient values (linear) where a pixel starts / finishes counting as clipped for the frame merge
#: (sRGB 0.977 -> 0.998: only the top of the range; a bright but recorded surface stays the ambient's).
CLIP_LO, CLIP_HI = 0.95, 0.995
#: Ambient minimum-channel range (linear) over which the neutral-highlight guard turns on
#: (sRGB 0.88 -> 0.91: every channel of the source near white).
GUARD_LO, GUARD_HI = 0.74, 0.80
#: Minimum / maximum channel ratio of the substituted frame above which it counts as neutral.
NEUTRAL_LO, NEUTRAL_HI = 0.90, 0.97
#: Substitute / ambient luminance ratios over which a near-clipped ambient pixel goes from keeping
#: its value to taking the substitute's (a camera's highlight roll-off lets a real view read a
#: little darker than the clipped ambient; half as bright is another exposure, not the view).
SUB_RATIO_LO, SUB_RATIO_HI = 0.5, 0.8
#: Most a flash frame may fill into a near-clipped ambient pixel, as a multiple of the ambient's
#: luminance there (one stop: a highlight roll-off's worth; see :func:`merge_frames`).
FLASH_FILL_MAX = 2.0
#: Largest weight of the flash light relative to the flash frame as shot (exposure-normalised).
K_FLASH_MAX = 1.0
#: Stops below a studio's darkest edit that :meth:`AdaptiveNet.widen_bounds` puts a floor.
FLOOR_MARGIN = 0.1
#: Linear luminance over which :meth:`AdaptiveNet._floored_ev` counts a pixel of the final as
#: white, from not at all to wholly (L* 95 to 97, the ``blown`` threshold of
#: :func:`flambient.sanity.blown_share`): a ramp, not a step, so that the blown share is a
#: continuous function of the exposure (the ONNX graph and torch then agree on where it crosses
#: :data:`HIGHLIGHT_BLOWN_MAX`), and below L* 97 so that the context's estimate (256 px, before
#: saturation and gamut) errs on the safe side.
WHITE_OUT = (0.875, 0.925)
#: Share of a bracket set's recorded ambient pixels that holding its exposure floor may turn white
#: before the floor gives way, down to ``bracket_highlight_floor`` (:meth:`AdaptiveNet._floored_ev`).
HIGHLIGHT_BLOWN_MAX = 0.005
#: Relative slack of the mean a relaxed bracket floor keeps (:meth:`AdaptiveNet._floored_ev`):
#: 0.01 %, so that the local floor's bisection never decides on float noise.
KEPT_SLACK = 1e-4
#: Share of local contrast (in log luminance) the local gain keeps at least (see AdaptiveNet.local_grid).
LOCAL_CONTRAST_KEEP = 0.5
_EPS = 1e-6
_LN2 = 0.6931471805599453


#: Style parameters with a separate offset for single images, added where the input has no flash
#: and no window frame. A single image is a camera or HDR-merge rendering (already white-balanced
#: and tone-mapped, usually a little flat and dark); a bracket's ambient frame is raw ambient light
#: (a tungsten cast, often shot bright). Teaching single images through the shared style and CNN
#: cost the bracket sets 1.3-3.1 dE2000 on the synthetic studio benchmark (README, "The shipped
#: default"); these offsets, trained alone with the rest frozen (``train_only``), leave bracket
#: sets exactly as they were. Models saved before them load with them at zero (the old behaviour).
SINGLE_STYLE = ("single_curve", "single_key", "single_ev_strength", "single_wb_strength", "single_saturation",
                "single_matrix")

#: The shared style parameter each single-image offset is added to (``shared + offset`` is what a
#: single image uses, ``shared`` what a bracket set uses). A training stage that changes the
#: bracket sets' colour or tone can hold the single images' sums (:meth:`AdaptiveNet.hold_single_style`).
SINGLE_OFFSET_OF = {"curve_theta": "single_curve", "log2_key": "single_key", "ev_strength": "single_ev_strength",
                    "wb_strength": "single_wb_strength", "saturation": "single_saturation", "matrix": "single_matrix"}

#: Style parameters of the window pull (:meth:`AdaptiveNet.window_ev`): where a window-pull frame
#: fills the ambient's clipped pixels, the view is brought toward a learned level. Without it
#: a pulled view 3-5 stops above the room stays white (the local grid falls at most
#: ``local_ev`` stops and keeps half the contrast between room and window).
WINDOW_STYLE = ("window_key", "window_strength")
#: Style parameter of the ambient frame's own white balance in a flash set
#: (:func:`ambient_cast`): the share of the ambient light's colour cast, measured against the
#: flash frame, that is taken out of the ambient frame before the flash light is added. An editor
#: neutralises the ambient layer and keeps the flash layer (already neutral) as shot; one white
#: balance of the mix (grey-world on the merged image) cannot do both, and a fixed colour matrix
#: learned on tungsten ambient frames takes colour out of the materials of every real set.
#: Used clamped to [0, 1]; a model saved before it loads with 0 (no change: the old finals).
AMBIENT_STYLE = ("ambient_wb",)
#: Largest per-channel gain (either way) of the ambient white balance: +-2 stops. Taking out a
#: tungsten cast from an ambient frame balanced for the flash (a RAW shoot at a fixed daylight
#: white balance) needs a blue gain of 2.7x at 3000 K and 3.4x at 2700 K (luminance kept); with
#: the whole share this bound reaches about 2800 K, the earlier +-1 stop about 3500 K, which left
#: such rooms yellow. Camera JPEGs balanced by the camera have casts well inside either bound.
AMBIENT_GAIN_MAX = 4.0
#: Largest darkening (stops) of the window-pull frame's view by the window pull.
WINDOW_EV_MIN = -8.0
#: Share of the distance to ``window_key`` a new model's window pull starts at (``window_strength``,
#: used clamped to [0, 1]). A model saved before the pull loads with 0: no pull, the old finals.
WINDOW_STRENGTH_INIT = 0.9
#: Window-pull frame luminance (linear, times the ambient's white) over which a pixel the ambient
#: clips becomes a sure view, a seed of :func:`view_region`. Measured on 51 synthetic studio
#: sets with a window frame: the window glass is recorded at 7-30x white (5th-95th percentile),
#: every other clipped pixel below 2.5x except lamps; the real frobisher bracket's sky at 4-8x.
VIEW_WHITE = (2.0, 4.0)
#: Cells per side of the view-region map (:meth:`AdaptiveNet.view_region`), computed once per
#: image on the context stack and carried in the context vector.
VIEW_MAP = 64
#: Share of a cell that must be a sure view (seed) / a view candidate for the cell to count.
VIEW_SEED_SHARE, VIEW_CANDIDATE_SHARE = 0.5, 0.25
#: Stops below the view's log-average level (its sure pixels) at which a candidate stops being
#: part of it (:func:`above_floor`: its weight rises over the half stop above that level): the
#: ground and roofs under a bright sky sit 1-2.6 stops below it on the real frobisher bracket,
#: the glow of a lamp on a wall next to a window 3.7-4.5 stops below the synthetic views.
VIEW_DEPTH = 3.0
#: Red / blue ratio (linear) over which a candidate turns out to be a lamp (:func:`daylight_candidates`):
#: daylight views measure 1.0-1.8 (synthetic glass, the frobisher sky), tungsten lamps and their
#: glare 3.6-6.5 (synthetic sconces and downlights).
LAMP_RED_BLUE = (2.0, 3.0)


def _fill_missing_style(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: an older file gets zeros for the parts it predates.

    Zeros switch them off: the single-image offsets (:data:`SINGLE_STYLE`), the window pull
    (:data:`WINDOW_STYLE`, ``window_fc``: strength 0, no correction) and the ambient white
    balance (:data:`AMBIENT_STYLE`: share 0), so the file's finals are what they were.
    """
    for name, tensor in module.state_dict().items():
        key = prefix + name
        if key not in state_dict and (name in SINGLE_STYLE or name in WINDOW_STYLE or name in AMBIENT_STYLE
                                      or name.startswith("window_fc.")):
            state_dict[key] = torch.zeros_like(tensor)


def local_step_margins(bins: int, keep: float = LOCAL_CONTRAST_KEEP) -> list[float]:
    """Largest fall of the local gain (stops) between luminance bins ``i`` and ``i + 1``.

    Bins sit at encoded luminance ``u_i = i * CURVE_U_MAX / (bins - 1)`` (the sRGB curve: linear
    ``y ~ ((u + 0.055) / 1.055) ** 2.4``), so ``d log2(y) / du = 2.4 / ((u + 0.055) ln 2)``, least
    at the segment's top. A fall of ``(1 - keep)`` times that slope times the bin spacing keeps
    ``d log2(y * 2**gain) >= keep * d log2(y)`` on the whole segment (the gain is linear in u).
    """
    du = CURVE_U_MAX / (bins - 1)
    return [(1.0 - keep) * du * 2.4 / ((du * (i + 1) + 0.055) * _LN2) for i in range(bins - 1)]


def _wmean(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean (N) of N x 1 x h x w values ``v`` with weights ``w`` (same shape)."""
    return (v * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1.0)


def _in_export() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def _smoothstep(lo: float, hi: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def merge_frames(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel frame merge of an N x 13 x h x w linear stack (exposure-normalised frames).

    Returns ``(radiance, flash_light, clip, substitute)``, each N x 3 x h x w except ``clip``
    (N x 1 x h x w): ``radiance`` is the ambient frame with near-clipped pixels replaced by the
    window-pull frame (else the flash frame, capped at :data:`FLASH_FILL_MAX` times the
    ambient's luminance, else left as is) where that frame is at least as bright
    (:data:`SUB_RATIO_LO`, :data:`SUB_RATIO_HI`); ``flash_light`` is the flash
    frame scaled by the share of its luminance the merged radiance does not explain,
    ``flash * max(1 - Y_radiance / Y_flash, 0)`` (zeros without a flash frame): its colour is the
    flash frame's and its amount a ratio of luminances, so frames whose white balance or
    exposure differ (camera JPEGs) give no per-channel difference noise; ``clip`` the blend
    weight used; ``substitute`` the frame blended in where the ambient clips.

    Why the flash frame is capped: in camera JPEGs it reads a view 2-35x (median 5x) what the
    ambient records beside the clip (the real shoot's set03: highlight roll-off and exposure
    data that do not match), so pasted in as is it gave white speckles on glass and white
    blotches in views; on the synthetic flash-only sets it turned lamp-lit walls white (dE2000
    7.12 uncapped, 5.67 capped). A window-pull frame is exposed for the view: not capped.
    """
    amb, fl, win = x[:, AMBIENT], x[:, FLASH], x[:, WINDOW]
    hf, hw = x[:, HAS_FLASH : HAS_FLASH + 1], x[:, HAS_WINDOW : HAS_WINDOW + 1]
    y_amb = luma(amb)
    fill = fl * (FLASH_FILL_MAX * y_amb / luma(fl).clamp_min(_EPS)).clamp(max=1.0)  # flash frame, capped
    sub = hw * win + (1.0 - hw) * (hf * fill + (1.0 - hf) * amb)
    has_sub = torch.maximum(hf, hw)
    # A clipped ambient pixel hides a radiance at least as bright as it shows: a substitute that
    # is darker there is not the view (frames at inconsistent exposures), so it is not used.
    brighter = _smoothstep(SUB_RATIO_LO, SUB_RATIO_HI, luma(sub) / y_amb.clamp_min(_EPS))
    clip = _smoothstep(CLIP_LO, CLIP_HI, amb.amax(dim=1, keepdim=True)) * has_sub * brighter
    rad = amb + clip * (sub - amb)
    return rad, flash_light(x, rad), clip, sub


def flash_light(x: torch.Tensor, rad: torch.Tensor) -> torch.Tensor:
    """The flash light N x 3 x h x w a merged radiance ``rad`` (N x 3 x h x w, linear) does not
    explain: ``flash * max(1 - Y_rad / Y_flash, 0)``, zeros without a flash frame.

    Also where the ambient clipped: a wall lit by a lamp keeps the flash light around the lamp
    (without it, a disc of the lamp's colour, darker than the wall around it, showed where the
    ambient clipped).
    """
    fl, hf = x[:, FLASH], x[:, HAS_FLASH : HAS_FLASH + 1]
    share = (1.0 - luma(rad) / luma(fl).clamp_min(_EPS)).clamp(0.0, 1.0)
    return fl * share * hf


def ambient_cast(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Colour cast of the ambient light against the flash, N x 3 (natural log, luminance-free).

    ``x`` the N x 13 x s x s linear stack, ``valid`` (N x 1 x s x s) the pixels to measure (the
    ambient recorded them). The flash is a known, near-neutral light the camera balanced for, so
    the ambient frame's mean colour over the flash frame's, each divided by its own luminance,
    is the colour of the ambient light (a tungsten room: red up, blue down), whatever the
    colours of the materials (both frames see the same ones). Zeros without a flash frame.
    """
    amb, fl = x[:, AMBIENT], x[:, FLASH]
    hf = x[:, HAS_FLASH].mean(dim=(1, 2))                                    # N
    w = valid * (luma(fl) > 1e-4).to(x.dtype)
    wsum = w.sum(dim=(2, 3)).clamp_min(1.0)                                  # N x 1
    mean_a = (amb * w).sum(dim=(2, 3)) / wsum + 1e-6                         # N x 3
    mean_f = (fl * w).sum(dim=(2, 3)) / wsum + 1e-6
    chroma_a = mean_a / luma(mean_a[:, :, None])[:, :, 0]
    chroma_f = mean_f / luma(mean_f[:, :, None])[:, :, 0]
    return torch.log(chroma_a / chroma_f) * (hf > 0.5).to(x.dtype)[:, None]


def white_balance_ambient(rad: torch.Tensor, amb: torch.Tensor, clip: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """``rad`` (N x 3 x h x w, from :func:`merge_frames`) with its ambient part times ``gains``
    (N x 3 x 1 x 1): ``rad = (1 - clip) * amb + clip * sub``, so only the first term is
    balanced; the frame filled in where the ambient clips (a view, the flash) keeps its colour."""
    return rad + (1.0 - clip) * amb * (gains - 1.0)


def highlight_guard(x: torch.Tensor, clip: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
    """Weight in [0, 1] (N x 1 x h x w) of "this pixel was bright and neutral in the source".

    The ambient frame has every channel near white; when a substitute frame (window pull or
    flash) filled in a clipped pixel, that frame must be neutral there too (a real view keeps
    its colour).
    """
    ratio = sub.amin(dim=1, keepdim=True) / sub.amax(dim=1, keepdim=True).clamp_min(_EPS)
    neutral_sub = _smoothstep(NEUTRAL_LO, NEUTRAL_HI, ratio)
    return bright_source(x[:, AMBIENT]) * (1.0 - clip + clip * neutral_sub)


def bright_source(amb: torch.Tensor) -> torch.Tensor:
    """Weight in [0, 1] (N x 1 x h x w) of "every channel of the ambient (N x 3 x h x w, linear) is
    near white": :func:`highlight_guard` where no other frame filled the pixel in."""
    return _smoothstep(GUARD_LO, GUARD_HI, amb.amin(dim=1, keepdim=True))


def daylight_candidates(x: torch.Tensor, clip: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
    """Weight in [0, 1] (N x 1 x h x w) of "the window-pull frame may show a view here".

    ``x`` the N x 13 x h x w linear stack, ``clip`` and ``sub`` from :func:`merge_frames`: the
    ambient clips (``clip``), a window-pull frame exists and fills the pixel in a colour that is
    not a lamp's (red / blue below :data:`LAMP_RED_BLUE`: tungsten light and its glare are
    excluded). Per pixel, so tiles stay exact.
    """
    red_blue = sub[:, 0:1] / sub[:, 2:3].clamp_min(_EPS)
    daylight = 1.0 - _smoothstep(LAMP_RED_BLUE[0], LAMP_RED_BLUE[1], red_blue)
    return clip * x[:, HAS_WINDOW : HAS_WINDOW + 1] * daylight


def above_floor(sub: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Weight in [0, 1] (N x 1 x h x w): ``sub``'s luminance is above ``floor`` (N, linear, from
    :func:`view_floor`), rising from 0 at the floor to 1 half a stop above it."""
    ratio = luma(sub) / floor.clamp_min(_EPS).view(-1, 1, 1, 1)
    return _smoothstep(1.0, 2 ** 0.5, ratio)


def sure_views(cand: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
    """Weight in [0, 1] (N x 1 x h x w) of sure view pixels: candidates at least :data:`VIEW_WHITE`
    times the ambient's white."""
    return cand * _smoothstep(VIEW_WHITE[0], VIEW_WHITE[1], luma(sub))


def view_floor(sure: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
    """Least linear luminance (N) of a view: :data:`VIEW_DEPTH` stops under the log-average of
    its sure pixels (``sure`` from :func:`sure_views`; any value when there are none)."""
    y = torch.log2(luma(sub).clamp_min(1e-4))
    level = (y * sure).sum(dim=(1, 2, 3)) / sure.sum(dim=(1, 2, 3)).clamp_min(1e-3)
    return torch.exp((level - VIEW_DEPTH) * _LN2)


def _cell_means(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean of N x 1 x h x w ``x`` over a ``cells`` x ``cells`` partition (N x 1 x cells x cells).

    Row ``r`` falls in cell ``floor(r * cells / h)`` (likewise columns); two averaging matmuls,
    so ONNX export keeps ``h`` and ``w`` dynamic (``adaptive_avg_pool2d`` does not export).
    """
    def averaging(n_px: torch.Tensor) -> torch.Tensor:           # cells x n
        idx = torch.cumsum(torch.ones_like(n_px), 0) - 1.0
        cell = torch.floor(idx * cells / n_px.shape[0])
        member = (cell[None, :] == torch.arange(cells, dtype=x.dtype, device=x.device)[:, None]).to(x.dtype)
        return member / member.sum(dim=1, keepdim=True).clamp_min(1.0)

    rows, cols = averaging(x[0, 0, :, 0]), averaging(x[0, 0, 0, :])
    return torch.matmul(torch.matmul(rows, x), cols.t())


def view_region(cand: torch.Tensor, sure: torch.Tensor, cells: int = VIEW_MAP) -> torch.Tensor:
    """Map N x 1 x ``cells`` x ``cells`` in {0, 1} of the windows' views, from a context stack.

    ``cand`` from :func:`daylight_candidates` and ``sure`` from :func:`sure_views`, both at the
    context resolution (s x s, s a multiple of ``cells`` or not: :func:`_cell_means`).
    Seeds are blocks of 3 x 3 cells that are mostly a sure view (:data:`VIEW_SEED_SHARE` of each
    cell at least :data:`VIEW_WHITE` times the ambient's white; the bright core of a downlight or
    a bulb is smaller than such a block); the region grows from them through cells
    that hold candidates (:data:`VIEW_CANDIDATE_SHARE`), so the darker parts of a view (roofs,
    trees, the ground under a bright sky) join the sky they touch, while a clipped wall, a desk
    in the sun or a ceiling around a lamp, separated from any view by pixels the ambient
    recorded, does not. Finally one cell of margin, so the pixels at a window's edge (the
    per-pixel ``cand`` draws the edge itself) get the whole pull: no bright ring. Brightness
    alone cannot tell a view from a lamp or a sunlit wall; connection to a sure view can.
    """
    with torch.no_grad():
        seeds = (_cell_means(sure, cells) >= VIEW_SEED_SHARE).to(cand.dtype)
        region = -F.max_pool2d(-seeds, 3, 1, 1)  # erosion: a seed is a 3 x 3 block (a lamp's core is smaller)
        allowed = (_cell_means(cand, cells) >= VIEW_CANDIDATE_SHARE).to(cand.dtype)
        for _ in range(cells):  # geodesic dilation: at most `cells` steps cross the map
            region = F.max_pool2d(region, 3, 1, 1) * allowed
        return F.max_pool2d(region, 3, 1, 1)


def to_gamut(rgb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pull each pixel toward its grey ``y`` (N x 1 x ...) until every channel is in [0, 1].

    ``y`` must lie in [0, 1]. The chromaticity direction (hue) is kept; only saturation drops.
    """
    d = rgb - y
    hi = ((1.0 - y) / d.amax(dim=1, keepdim=True).clamp_min(_EPS)).clamp(max=1.0)
    lo = (y / (-d.amin(dim=1, keepdim=True)).clamp_min(_EPS)).clamp(max=1.0)
    return y + d * torch.minimum(hi, lo).clamp_min(0.0)


class LiveTerms(NamedTuple):
    """Which optional terms of :meth:`AdaptiveNet.apply` may be non-zero on a chunk of pixels."""

    fill: bool      #: another frame fills in where the ambient clips (:func:`merge_frames`' clip)
    window: bool    #: ... and the window pull may apply (a window-pull frame fills in)
    flash: bool     #: a flash frame adds light
    balance: bool   #: the ambient white balance is not exactly ones
    guard: bool     #: some ambient pixel is near white in every channel (:func:`bright_source`)


def live_terms(x: torch.Tensor, amb_gains: torch.Tensor) -> LiveTerms:
    """:class:`LiveTerms` of the N x 13 x h x w chunk ``x`` with ambient gains ``amb_gains``.

    A term is skipped only where it is exactly zero: the clip weight is 0 unless some ambient
    channel exceeds :data:`CLIP_LO` and a flash or window frame exists, the guard is 0 unless
    every channel of some pixel exceeds :data:`GUARD_LO`. Skipping changes results by float
    rounding at most (``a + 0 * b`` is ``a``; the ambient balance is written ``amb * g``
    instead of ``amb + amb * (g - 1)``). Training and export keep every term (one graph), and
    so do GPUs: there a term costs less than the host sync that would test it.
    """
    if torch.is_grad_enabled() or _in_export() or x.device.type != "cpu":
        return LiveTerms(True, True, True, True, True)
    amb = x[:, AMBIENT]
    flash = bool(x[:, HAS_FLASH].amax() > 0.0)
    window = bool(x[:, HAS_WINDOW].amax() > 0.0)
    fill = (flash or window) and bool(amb.amax() > CLIP_LO)
    return LiveTerms(fill=fill, window=fill and window, flash=flash,
                     balance=not bool(torch.all(amb_gains == 1.0)),
                     guard=bool(amb.amin(dim=1).amax() > GUARD_LO))


def _fast_cpu(t: torch.Tensor) -> bool:
    """Whether ``t`` may take the numpy forms of the sRGB curve (CPU float32 inference)."""
    return t.device.type == "cpu" and t.dtype == torch.float32 and not t.requires_grad and not _in_export()


def _encoded(y: torch.Tensor) -> torch.Tensor:
    """:func:`~flambient.nets.registry.encode_rgb` of linear ``y`` (any shape); on CPU float32
    inference through :func:`~flambient.colour.srgb_encode_into` (cbrt/sqrt form, about 2x faster
    than ``pow``, within 3 float32 ulps)."""
    if not _fast_cpu(y):
        return encode_rgb(y)
    out = torch.empty_like(y)
    srgb_encode_into(y.contiguous().numpy(), out.numpy(), ENCODE_MAX)
    return out


def bound_ratios(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """``x`` (... x n, positive) with neighbours at most a factor ``ratio`` (> 1) apart: in log
    terms ``l'_0 = l_0``, ``l'_(i+1) = clamp(l_(i+1), l'_i - ln ratio, l'_i + ln ratio)``. A
    sequence that already keeps the bound is returned as it is (up to the log round trip)."""
    log_r = float(np.log(ratio))
    logs = torch.log(x.clamp_min(1e-12))
    out = [logs[..., 0]]
    for i in range(1, x.shape[-1]):
        out.append(torch.minimum(torch.maximum(logs[..., i], out[-1] - log_r), out[-1] + log_r))
    return torch.exp(torch.stack(out, dim=-1))


@register
class AdaptiveNet(FlambientNet):
    """See the module docstring. Config kwargs are stored in model files.

    Args:
        grid_size: spatial cells of the local gain grid per side (G).
        luma_bins: luminance bins of the local grid (D >= 2).
        width: channels of the context CNN.
        curve_knots: segments of the tone curve (K).
        ev_range: (lowest, highest) exposure change in stops the global part may apply.
        local_ev: bound of the local gain in stops (either sign).
        single_ev_floor: lowest exposure change (stops, whole image) for a single image.
        bracket_ev_floor: lowest exposure change (stops) of a bracket set's final against its
            ambient frame, on the ambient's unclipped pixels.
        bracket_highlight_floor: how far (stops, at most ``bracket_ev_floor``) a bracket set's floor
            gives way where holding it would turn more than :data:`HIGHLIGHT_BLOWN_MAX` of the
            ambient's recorded pixels white (a flash hot spot, a lamp's glow on a ceiling); None:
            it never gives way (models saved before it).
        bracket_view_slope: least slope of a bracket set's tone curve over its brightest tones
            (encoded :data:`VIEW_TONES_FROM` to the exposed white; 0 = none, 1 = identity's 0.98).
        bracket_curve_ratio: largest factor (> 1) between the slopes of neighbouring segments of a
            bracket set's tone curve below the exposed white (:meth:`bracket_slopes`); None: no
            bound (models saved before it).
    """

    spec = SPEC

    def __init__(self, grid_size: int = 8, luma_bins: int = 8, width: int = 32, curve_knots: int = 24,
                 ev_range: tuple[float, float] | list[float] = (-2.0, 3.0), local_ev: float = 3.0,
                 single_ev_floor: float = -0.2, bracket_ev_floor: float = -1.0, bracket_view_slope: float = 0.0,
                 bracket_highlight_floor: float | None = None, bracket_curve_ratio: float | None = None) -> None:
        ev_range = [float(v) for v in ev_range]
        extra: dict[str, float] = {}
        if bracket_highlight_floor is not None:
            extra["bracket_highlight_floor"] = float(bracket_highlight_floor)
        if bracket_curve_ratio is not None:
            extra["bracket_curve_ratio"] = float(bracket_curve_ratio)
        super().__init__(grid_size=grid_size, luma_bins=luma_bins, width=width, curve_knots=curve_knots,
                         ev_range=ev_range, local_ev=local_ev, single_ev_floor=single_ev_floor,
                         bracket_ev_floor=bracket_ev_floor, bracket_view_slope=bracket_view_slope, **extra)
        if grid_size < 2 or luma_bins < 2 or curve_knots < 4 or curve_knots % 2:
            raise ValueError("grid_size and luma_bins must be at least 2, curve_knots even and at least 4")
        if not ev_range[0] < 0.0 < ev_range[1]:
            raise ValueError("ev_range must be (negative, positive) stops")
        self.grid_size, self.luma_bins, self.curve_knots = grid_size, luma_bins, curve_knots
        self.ev_lo, self.ev_hi, self.local_ev = ev_range[0], ev_range[1], float(local_ev)
        self.single_ev_floor = max(float(single_ev_floor), ev_range[0])
        self.bracket_ev_floor = max(float(bracket_ev_floor), ev_range[0])
        self.bracket_highlight_floor = (None if bracket_highlight_floor is None
                                        else max(float(bracket_highlight_floor), ev_range[0]))
        if not 0.0 <= bracket_view_slope <= 2.0:
            raise ValueError("bracket_view_slope must lie in [0, 2]")
        self.bracket_view_slope = float(bracket_view_slope)
        if bracket_curve_ratio is not None and not 1.0 < bracket_curve_ratio <= 4.0:
            raise ValueError("bracket_curve_ratio must lie in (1, 4]")
        self.bracket_curve_ratio = None if bracket_curve_ratio is None else float(bracket_curve_ratio)
        k = curve_knots
        # --- style: global parameters a handful of pairs can determine
        self.curve_theta = nn.Parameter(self._init_curve(k))
        if float(self.view_slope_floor().sum()) * CURVE_U_MAX / k >= 0.9 * WHITE_POINT:
            raise ValueError("bracket_view_slope and bracket_curve_ratio leave the curve no room below the "
                             "view tones (raise bracket_curve_ratio or lower bracket_view_slope)")
        self.log2_key = nn.Parameter(torch.tensor(-2.47))      # target log-average luminance (0.18)
        self.ev_strength = nn.Parameter(torch.tensor(1.0))    # logit: share of the distance to the key
        self.wb_strength = nn.Parameter(torch.tensor(0.0))    # logit of the grey-world strength
        self.wb_bias = nn.Parameter(torch.zeros(3))           # log gains on top (luminance kept)
        self.flash_weight = nn.Parameter(torch.tensor(0.0))   # logit: flash light vs ambient brightness
        self.saturation = nn.Parameter(torch.tensor(0.0))     # log saturation factor
        self.matrix = nn.Parameter(torch.zeros(3, 3))         # added to the identity, bounded by tanh
        # --- the same style's offsets for single images (see SINGLE_STYLE): zero = the bracket style
        self.single_curve = nn.Parameter(torch.zeros(k))
        self.single_key = nn.Parameter(torch.tensor(0.0))
        self.single_ev_strength = nn.Parameter(torch.tensor(0.0))
        self.single_wb_strength = nn.Parameter(torch.tensor(0.0))
        self.single_saturation = nn.Parameter(torch.tensor(0.0))
        self.single_matrix = nn.Parameter(torch.zeros(3, 3))  # added to ``matrix`` before the tanh
        # --- the window pull (see WINDOW_STYLE): log2 linear luminance the view is pulled toward
        self.window_key = nn.Parameter(torch.tensor(-2.0))
        self.window_strength = nn.Parameter(torch.tensor(WINDOW_STRENGTH_INIT))
        # --- the ambient frame's own white balance in a flash set (see AMBIENT_STYLE)
        self.ambient_wb = nn.Parameter(torch.tensor(0.5))
        self.register_load_state_dict_pre_hook(_fill_missing_style)
        # --- image-adaptive CNN: bounded corrections and the local grid
        c = SPEC.in_channels
        self.features = nn.Sequential(conv_act(c, 16, 2), conv_act(16, 32, 2), conv_act(32, width, 2),
                                      conv_act(width, width, 2))
        self.local = nn.Sequential(conv_act(width, width), nn.Conv2d(width, luma_bins, 1))
        self.global_fc = nn.Sequential(nn.Linear(width + 4, width), nn.LeakyReLU(0.1),
                                       nn.Linear(width, k + 6))
        self.window_fc = nn.Linear(width + 4, 1)   # per-image correction of the window pull (stops)
        for m in (self.local[-1], self.global_fc[-1], self.window_fc):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def view_slope_floor(self) -> torch.Tensor:
        """Least slopes (K/2) of the bracket curve's first half: ``bracket_view_slope`` on the
        segments at encoded inputs from :data:`VIEW_TONES_FROM` to the exposed white, 0 below.
        A window's view, the brightest tones of a flash set, keeps at least that share of its
        contrast whatever the weights (a curve fitted to photographs whose windows are blown
        flattens its top, README "The upper tones")."""
        half = self.curve_knots // 2
        first = int(round(VIEW_TONES_FROM * half))
        least = torch.zeros(half, device=self.curve_theta.device, dtype=self.curve_theta.dtype)
        least[first:] = self.bracket_view_slope
        if self.bracket_curve_ratio is not None:
            # Below the view tones the least slope falls by the ratio per segment, not to 0 at once:
            # a step there would be a kink in every curve (see bracket_slopes).
            steps = torch.arange(first, 0, -1, device=least.device, dtype=least.dtype)
            least[:first] = self.bracket_view_slope * self.bracket_curve_ratio ** (-steps)
        return least

    def bracket_slopes(self, raw: torch.Tensor) -> torch.Tensor:
        """A bracket set's curve slopes (N x K) from raw logits N x K: :meth:`curve_slopes` with the
        view tones' least slopes (:meth:`view_slope_floor`) and ``bracket_curve_ratio``.

        Why the ratio: the stage-7 curve of the shipped default, fitted to the photographs' spread
        of tones under a least slope of 1 over the view tones, came out with a plateau just below
        them (slope 0.35 at encoded 0.67-0.75, then 1.1-1.8 above): on every real flash set a band
        of wall tones 8 L* wide was squeezed into 3 L* and the near-whites above it stretched to
        white (README, "A smooth bracket tone curve")."""
        least = self.view_slope_floor()[None] if self.bracket_view_slope > 0.0 else None
        return self.curve_slopes(raw, least, self.bracket_curve_ratio)

    @staticmethod
    def _init_curve(k: int) -> torch.Tensor:
        """Logits of equal slopes: identity (x WHITE_POINT) up to the source's white, then a shoulder."""
        return torch.full((k,), float(torch.log(torch.expm1(torch.tensor(1.0)))))

    @staticmethod
    def curve_slopes(raw: torch.Tensor, least: torch.Tensor | None = None,
                     max_ratio: float | None = None) -> torch.Tensor:
        """Positive slopes N x K from raw logits: the first half of the knots (encoded 0-1) rises to
        :data:`WHITE_POINT`, the second half (1 to CURVE_U_MAX) to 1.

        ``least`` (N x K/2 or K/2, encoded output per encoded input, >= 0, summing to under
        ``WHITE_POINT / step``): the least slope of each segment of the first half; the logits
        share what is left of the rise (:meth:`view_slope_floor`). ``max_ratio`` R: the logits'
        shares of the first half are first bounded so that neighbours differ by at most a factor
        R (:func:`bound_ratios`); with a ``least`` whose neighbours do too, so do the slopes (the
        sum of two such sequences keeps the bound: a mediant lies between its two ratios)."""
        k = raw.shape[-1]
        s = F.softplus(raw)
        step = CURVE_U_MAX / k
        lo, hi = s[..., : k // 2], s[..., k // 2 :]
        if max_ratio is not None:
            lo = bound_ratios(lo, max_ratio)
        if least is None:
            lo = lo * (WHITE_POINT / (lo.sum(dim=-1, keepdim=True) * step))
        else:
            rest = WHITE_POINT - least.sum(dim=-1, keepdim=True) * step
            lo = least + lo * (rest / (lo.sum(dim=-1, keepdim=True) * step))
        hi = hi * ((1.0 - WHITE_POINT) / (hi.sum(dim=-1, keepdim=True) * step))
        return torch.cat([lo, hi], dim=-1)

    # ------------------------------------------------------------------ parameter groups
    def style_parameters(self) -> list[nn.Parameter]:
        """The global style (what few-shot fine-tuning trains)."""
        return [self.curve_theta, self.log2_key, self.ev_strength, self.wb_strength, self.wb_bias,
                self.flash_weight, self.saturation, self.matrix, *self.single_style(), self.window_key,
                self.window_strength, self.ambient_wb]

    def single_style(self) -> list[nn.Parameter]:
        """The single-image offsets of the style (:data:`SINGLE_STYLE`), in that order."""
        return [getattr(self, name) for name in SINGLE_STYLE]

    def single_effective(self, trainable: set[str]) -> dict[str, torch.Tensor]:
        """What single images use of the shared style (``shared + offset`` per :data:`SINGLE_OFFSET_OF`),
        to be held by :meth:`hold_single_style` while the parameters named ``trainable`` train.

        Raises :class:`ConfigError` when ``trainable`` names a parameter that moves a single image's
        final and has no single-image offset to compensate it (``wb_bias``, the CNN), or an offset
        itself. Free to train: the shared parameters of :data:`SINGLE_OFFSET_OF`, and the flash
        weight, window pull and ambient white balance, which do not act on single images.
        """
        from ..errors import ConfigError

        free = {*SINGLE_OFFSET_OF, *WINDOW_STYLE, *AMBIENT_STYLE, "flash_weight"}
        bad = sorted(n for n in trainable if n.split(".")[0] not in free)
        if bad:
            raise ConfigError(f"hold_single_style: training {', '.join(bad)} would change single images",
                              hint=f"train only {', '.join(sorted(free))} in such a stage")
        return {shared: (getattr(self, shared) + getattr(self, offset)).detach().clone()
                for shared, offset in SINGLE_OFFSET_OF.items()}

    @torch.no_grad()
    def hold_single_style(self, pins: dict[str, torch.Tensor]) -> None:
        """Set each single-image offset to ``pin - shared`` (``pins`` from :meth:`single_effective`):
        whatever the shared style became, single images get the values pinned."""
        for shared, offset in SINGLE_OFFSET_OF.items():
            getattr(self, offset).copy_(pins[shared] - getattr(self, shared))

    def set_training_bracket_floor(self, ev: float) -> None:
        """Use ``ev`` stops (at least ``ev_range[0]``) as the bracket floor from now on, in this
        object only: :attr:`config`, which a saved model file records, keeps the configured
        floor. For training (``train_bracket_ev_floor``): where the floor binds, the exposure is
        the floor's (``torch.maximum``) and the learned key gets no gradient."""
        self.bracket_ev_floor = max(float(ev), self.ev_lo)

    def widen_bounds(self, pairs: list[tuple[Any, Any]]) -> dict[str, float]:
        """Lower the exposure floors to the darkest edit among a studio's pairs, less :data:`FLOOR_MARGIN`.

        Exposure change of a pair (stops): log2 of the target's mean linear luminance over the
        source's: the whole image for single images, the ambient frame's unclipped pixels for
        bracket sets (as :meth:`_floor_target` measures). Floors only move down, never below
        ``ev_range[0]``: a studio whose edits darken can be learned; one that never darkens
        keeps the default's protection.
        """
        evs: dict[str, list[float]] = {"single_ev_floor": [], "bracket_ev_floor": []}
        for stack, target in pairs:
            amb = np.asarray(stack[..., AMBIENT], dtype=np.float64)
            single = is_single_image(stack)
            w = np.ones(amb.shape[:2], bool) if single else amb.max(axis=-1) < CLIP_LO
            if w.sum() < 16:
                continue
            y_src = colour.luminance(amb)[w].mean()
            y_tgt = colour.luminance(colour.srgb_to_linear(np.asarray(target, dtype=np.float32)))[w].mean()
            if y_src > 1e-6 and y_tgt > 1e-6:
                evs["single_ev_floor" if single else "bracket_ev_floor"].append(float(np.log2(y_tgt / y_src)))
        current = {"single_ev_floor": self.single_ev_floor, "bracket_ev_floor": self.bracket_ev_floor}
        changed = {key: max(self.ev_lo, min(values) - FLOOR_MARGIN) for key, values in evs.items() if values}
        changed = {key: v for key, v in changed.items() if v < current[key]}
        self.single_ev_floor = changed.get("single_ev_floor", self.single_ev_floor)
        self.bracket_ev_floor = changed.get("bracket_ev_floor", self.bracket_ev_floor)
        self.config.update(changed)
        return changed

    def context_parameters(self) -> list[nn.Parameter]:
        return [*self.style_parameters(), *self.features.parameters(), *self.local.parameters(),
                *self.global_fc.parameters(), *self.window_fc.parameters()]

    def regulariser(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Small pull of the per-image corrections' weights toward zero (keeps the CNN bounded)."""
        w = self.global_fc[-1].weight
        return 1e-4 * (w * w).sum() + 1e-4 * (self.local[-1].weight ** 2).sum()

    # ------------------------------------------------------------------ context
    def context_features(self, low: torch.Tensor) -> torch.Tensor:
        """The CNN's feature map N x width x s/16 x s/16 (independent of the style parameters)."""
        return self.features(encode_stack(low))

    def context(self, low: torch.Tensor) -> torch.Tensor:
        """N x 13 x s x s linear stack -> N x (20 + K + D*G*G + M*M) vector (layout in :meth:`unpack`)."""
        return self.context_from(low, self.context_features(low))

    def context_from(self, low: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """:meth:`context` with the CNN features of ``low`` given (few-shot fitting computes them once)."""
        f = self.context_features(low) if features is None else features
        n = low.shape[0]
        rad, light, clip, sub = merge_frames(low)
        y_rad, y_light = luma(rad), luma(light)
        valid = (rad.amax(dim=1, keepdim=True) < CLIP_HI).float() * (y_rad > 1e-4).float()
        wsum = valid.sum(dim=(1, 2, 3)).clamp_min(1.0)
        amb_gains = self.ambient_gains(ambient_cast(low, valid))                  # N x 3
        rad = white_balance_ambient(rad, low[:, AMBIENT], clip, amb_gains[:, :, None, None])
        y_rad = luma(rad)
        # Per-image corrections from the features.
        fg = f.mean(dim=(2, 3))
        key_rad = (torch.log2(y_rad.clamp_min(1e-4)) * valid).sum(dim=(1, 2, 3)) / wsum
        key_light = torch.log2((y_light * valid).sum(dim=(1, 2, 3)) / wsum + 1e-6)
        has_f, has_w = low[:, HAS_FLASH].mean(dim=(1, 2)), low[:, HAS_WINDOW].mean(dim=(1, 2))
        g_in = torch.cat([fg, (key_rad + 2.5)[:, None] / 4.0, (key_light + 2.5)[:, None] / 4.0,
                          has_f[:, None], has_w[:, None]], dim=1)
        g = self.global_fc(g_in)
        k = self.curve_knots
        d_curve, d_ev, d_flash, d_sat, d_wb = g[:, :k], g[:, k], g[:, k + 1], g[:, k + 2], g[:, k + 3 : k + 6]
        # Flash light scaled relative to the ambient's mean brightness (both linear).
        mean_rad = (y_rad * valid).sum(dim=(1, 2, 3)) / wsum
        mean_light = (y_light * valid).sum(dim=(1, 2, 3)) / wsum
        # Never more flash light than was shot (k <= K_FLASH_MAX): amplifying a faint flash (frames
        # without exposure data, a weak flash) only multiplies its noise and hot spots.
        k_flash = (2.0 * torch.sigmoid(self.flash_weight + 0.5 * torch.tanh(d_flash)) * mean_rad / (mean_light + 1e-6)
                   ).clamp(max=K_FLASH_MAX)
        k_flash = k_flash * has_f
        base = rad + k_flash.view(n, 1, 1, 1) * light
        # A single image (no flash, no window frame) takes the style plus its single-image offsets.
        single = torch.maximum(has_f, has_w) <= 0.5
        s1 = single.to(low.dtype)                                                 # N
        # Grey-world white balance on the base image's unclipped pixels, partial and bounded.
        mean_c = (base * valid).sum(dim=(2, 3)) / wsum[:, None] + 1e-6            # N x 3
        mean_y = luma(mean_c[:, :, None])[:, 0, 0]                                # N
        strength = torch.sigmoid(self.wb_strength + s1 * self.single_wb_strength)  # N
        log_g = strength[:, None] * torch.log(mean_y[:, None] / mean_c) + self.wb_bias[None] + 0.15 * torch.tanh(d_wb)
        gains = torch.exp(log_g.clamp(-0.69, 0.69))
        gains = gains / luma(gains[:, :, None])[:, 0, 0][:, None]
        # Exposure toward the learned key, bounded.
        key = ((torch.log2(luma(base * gains[:, :, None, None]).clamp_min(1e-4)) * valid).sum(dim=(1, 2, 3)) / wsum)
        ev = (torch.sigmoid(self.ev_strength + s1 * self.single_ev_strength) * (self.log2_key + s1 * self.single_key - key)
              + 0.5 * torch.tanh(d_ev))
        ev = ev.clamp(self.ev_lo, self.ev_hi)
        raw_curve = self.curve_theta[None] + s1[:, None] * self.single_curve[None] + 0.5 * torch.tanh(d_curve)
        slopes = self.curve_slopes(raw_curve, None if self.bracket_view_slope <= 0.0
                                   else (1.0 - s1)[:, None] * self.view_slope_floor())
        if self.bracket_curve_ratio is not None:  # single images keep that curve; bracket sets take bracket_slopes
            slopes = s1[:, None] * slopes + (1.0 - s1)[:, None] * self.bracket_slopes(raw_curve)
        mat = self.colour_matrix(s1)                                               # N x 3 x 3
        grid = self.local_grid(self.local(F.adaptive_avg_pool2d(f, (self.grid_size, self.grid_size))))
        w_floor, target, target_hard = self._floor_target(low, single)
        ev, target = self._floored_ev(base * gains[:, :, None, None], w_floor, target, target_hard, ev, slopes, mat, grid)
        ev_gain = torch.exp(ev * _LN2)
        cand = daylight_candidates(low, clip, sub)
        sure = sure_views(cand, sub)
        v_floor = view_floor(sure, sub)                                            # N
        cand = cand * above_floor(sub, v_floor)
        region = view_region(cand, sure)                                           # N x 1 x M x M
        s_h, s_w = low.shape[2], low.shape[3]
        low_pos = torch.tensor([0.0, 0.0, float(s_h), float(s_w)], device=low.device)
        rows_l, cols_l = pixel_index_grids(low, low_pos)
        matte = cand * self._sample_map(region, rows_l, cols_l, low_pos)
        win_gain = torch.exp(self.window_ev(matte, sub, ev, g_in) * _LN2)
        sat = torch.exp((self.saturation + s1 * self.single_saturation + 0.2 * torch.tanh(d_sat)).clamp(-0.5, 0.5))
        y_edit = luma(torch.einsum("nij,njhw->nihw", mat, base * gains[:, :, None, None] * ev_gain.view(n, 1, 1, 1))
                      .clamp_min(0.0))
        grid = grid + self._local_floor(y_edit, w_floor, target, grid, slopes).view(n, 1, 1, 1)
        return torch.cat([k_flash[:, None], ev_gain[:, None], sat[:, None], gains, mat.reshape(n, 9), win_gain[:, None],
                          v_floor[:, None], amb_gains, slopes,
                          grid.reshape(n, -1), region.reshape(n, -1)], dim=1)

    def ambient_gains(self, cast: torch.Tensor) -> torch.Tensor:
        """Per-channel gains N x 3 of the ambient frame in a flash set, from :func:`ambient_cast`.

        ``exp(-share * cast)`` with the learned share ``ambient_wb`` (clamped to [0, 1]), bounded
        to [1 / :data:`AMBIENT_GAIN_MAX`, :data:`AMBIENT_GAIN_MAX`] and divided by their own
        luminance (the ambient's brightness is kept). Exactly ones where there is no flash frame
        or the share is 0 (a model saved before this step: its finals to the last bit).
        """
        share = self.ambient_wb.clamp(0.0, 1.0)
        bound = float(np.log(AMBIENT_GAIN_MAX))
        g = torch.exp((-share * cast).clamp(-bound, bound))
        g = g / luma(g[:, :, None])[:, :, 0]
        on = (cast.abs().sum(dim=1, keepdim=True) > 0.0) & (share > 0.0)
        return torch.where(on, g, torch.ones_like(g))

    def colour_matrix(self, s1: torch.Tensor) -> torch.Tensor:
        """Colour matrices N x 3 x 3 (linear RGB, applied after white balance and exposure).

        ``s1`` (N): 1 for a single image, 0 for a bracket set. Identity plus a tanh-bounded
        learned part (each entry within +-0.25), the single-image offset ``single_matrix``
        added before the tanh; rows then rescaled to sum to 1, so grey stays grey.
        """
        raw = self.matrix[None] + s1.view(-1, 1, 1) * self.single_matrix[None]
        mat = torch.eye(3, device=raw.device, dtype=raw.dtype)[None] + 0.25 * torch.tanh(raw)
        return mat / mat.sum(dim=2, keepdim=True)

    def window_ev(self, matte: torch.Tensor, sub: torch.Tensor, ev: torch.Tensor, g_in: torch.Tensor) -> torch.Tensor:
        """Window pull (stops, N, in [:data:`WINDOW_EV_MIN`, 0]) of the window-pull frame's view.

        ``matte`` (N x 1 x s x s: :func:`daylight_candidates`, :func:`above_floor`, the sampled :func:`view_region`), ``sub`` from :func:`merge_frames`
        (N x 3 x s x s, linear, exposure-normalised), ``ev`` the global exposure (stops), ``g_in``
        the per-image features. The view's log-average luminance after the exposure (weighted by
        the matte) is moved toward ``window_key`` by a learned share, plus a bounded per-image
        correction; never brightened. 0 where the matte finds no view (bracket sets without a
        window frame, single images, a window frame that records only lamps).
        """
        w = matte
        key = (torch.log2(luma(sub).clamp_min(1e-4)) * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1e-3) + ev
        pull = self.window_strength.clamp(0.0, 1.0) * (self.window_key - key) + torch.tanh(self.window_fc(g_in)[:, 0])
        any_w = (w.sum(dim=(1, 2, 3)) > 0).to(pull.dtype)
        return pull.clamp(WINDOW_EV_MIN, 0.0) * any_w

    def _floor_target(self, low: torch.Tensor, single: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel weights (N x 1 x s x s), the least mean linear luminance (N) the edit should keep,
        and the least it must keep (N) where that would blow highlights (:meth:`_floored_ev`).

        A single image: every pixel, ``2**single_ev_floor`` times the source's mean (both
        targets). A bracket set: the ambient frame's unclipped pixels (its windows may rightly
        come down), ``2**bracket_ev_floor`` times their mean in the ambient frame, and
        ``2**bracket_highlight_floor`` times it (the same when that is None or higher).
        """
        amb = low[:, AMBIENT]
        w = torch.where(single.view(-1, 1, 1, 1), torch.ones_like(amb[:, :1]),
                        (amb.amax(dim=1, keepdim=True) < CLIP_LO).float())
        hard_ev = self.bracket_ev_floor if self.bracket_highlight_floor is None else min(
            self.bracket_highlight_floor, self.bracket_ev_floor)
        floor = torch.where(single, torch.full_like(single, self.single_ev_floor, dtype=amb.dtype),
                            torch.full_like(single, self.bracket_ev_floor, dtype=amb.dtype))
        hard = torch.where(single, torch.full_like(single, self.single_ev_floor, dtype=amb.dtype),
                           torch.full_like(single, hard_ev, dtype=amb.dtype))
        mean = _wmean(luma(amb), w)
        return w, mean * torch.exp(floor * _LN2), mean * torch.exp(hard * _LN2)

    def _floored_ev(self, rgb: torch.Tensor, w: torch.Tensor, target: torch.Tensor, target_hard: torch.Tensor,
                    ev: torch.Tensor, slopes: torch.Tensor, mat: torch.Tensor, grid: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exposure (stops, N) held at its floor, and the mean (N) the local lift must then keep.

        ``rgb`` is the N x 3 x s x s linear image the exposure acts on (white-balanced), ``w``,
        ``target`` and ``target_hard`` come from :meth:`_floor_target`, ``slopes`` the tone
        curves, ``mat`` the colour matrices and ``grid`` the local gains (before their lift).
        The floor is the least exposure at which the global edit keeps ``target``
        (:meth:`_exposure_floor`), unless the final would then show more than
        :data:`HIGHLIGHT_BLOWN_MAX` of the weighted pixels white (counted on the ramp
        :data:`WHITE_OUT`; the local gain included: it is what lifts a flash's hot spot): the
        floor then gives way to the exposure at which that share is reached, but never below the
        one keeping ``target_hard``. So a flash set is brought to its ambient frame's level as far
        as its highlights allow, as an editor would. The learned exposure wins where it is higher.
        """
        y = luma(rgb)
        e_pref = self._exposure_floor(y, w, target, ev, slopes)
        if self.bracket_highlight_floor is None or (not _in_export() and torch.equal(target_hard, target)):
            return e_pref, target
        with torch.no_grad():
            y_mat = luma(torch.einsum("nij,njhw->nihw", mat, rgb).clamp_min(0.0))
            s_h, s_w = y.shape[2], y.shape[3]
            pos = torch.tensor([0.0, 0.0, float(s_h), float(s_w)], device=y.device)
            rows, cols = pixel_index_grids(y, pos)
            g = grid.detach()
            # The local lift the floor will add at the preferred exposure (see _local_floor).
            lift = self._local_floor(y_mat * torch.exp(e_pref.detach() * _LN2).view(-1, 1, 1, 1), w, target, g, slopes)

            def final_tones(e: torch.Tensor) -> torch.Tensor:  # N x 1 x s x s, linear
                y_e = y_mat * torch.exp(e * _LN2).view(-1, 1, 1, 1)
                guide = (encode_rgb(y_e) / CURVE_U_MAX).clamp(0.0, 1.0)
                y_e = y_e * torch.exp((self._slice_grid(g, guide, rows, cols, pos) + lift.view(-1, 1, 1, 1)) * _LN2)
                return self._tone(encode_rgb(y_e).clamp(0.0, CURVE_U_MAX), slopes)

            e_hard = self._exposure_floor(y, w, target_hard, ev.detach(), slopes)
            lo_w, hi_w = WHITE_OUT
            e_safe = self._bisect(lambda e: _wmean(((final_tones(e) - lo_w) / (hi_w - lo_w)).clamp(0.0, 1.0), w),
                                  torch.full_like(e_hard, HIGHLIGHT_BLOWN_MAX), e_hard, e_pref, iterations=16,
                                  below=True)
            e_floor = torch.minimum(e_pref.detach(), e_safe)
            # A hair under the mean reached: ``final_tones`` carries the lift found on the local
            # floor's bisection grid, so the exact mean is reached exactly at a grid point, where
            # float noise would pick that point or the next (ONNX and torch then differ by one step).
            kept = _wmean(final_tones(e_floor), w) * (1.0 - KEPT_SLACK)
        relaxed = e_floor < e_pref
        return (torch.where(relaxed, torch.maximum(ev, e_floor), e_pref),
                torch.where(relaxed, torch.minimum(target, torch.maximum(target_hard, kept)), target))

    def _mean_out(self, y: torch.Tensor, w: torch.Tensor, slopes: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Weighted mean (N) of the tone curve's linear output for ``y * 2**e`` (``e`` N stops)."""
        u = encode_rgb(y * torch.exp(e * _LN2).view(-1, 1, 1, 1)).clamp(0.0, CURVE_U_MAX)
        return _wmean(self._tone(u, slopes), w)

    def _bisect(self, mean_out: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor, lo: torch.Tensor,
                hi: torch.Tensor, iterations: int = 10, below: bool = False) -> torch.Tensor:
        """Least value in [``lo``, ``hi``] (N) whose ``mean_out`` reaches ``target`` (``mean_out`` increasing);
        ``lo`` itself when it already does, ``hi`` when nothing does (no gradient). With ``below``,
        the bracket's lower end instead: the greatest value found that stays under ``target``."""
        with torch.no_grad():
            lo = lo.detach()
            start, hi = lo, hi.detach()
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                ok = mean_out(mid) >= target
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid)
            if below:  # never reached: the upper end itself
                hi = torch.where(mean_out(hi) >= target, lo, hi)
            return torch.where(mean_out(start) >= target, start, hi)

    def _exposure_floor(self, y: torch.Tensor, w: torch.Tensor, target: torch.Tensor, ev: torch.Tensor,
                        slopes: torch.Tensor) -> torch.Tensor:
        """Lowest exposure (stops, N) in [``ev``, ``ev_hi``] at which the global edit keeps ``target``.

        ``y`` is the N x 1 x s x s linear luminance the exposure gain and tone curve act on;
        ``w`` and ``target`` come from :meth:`_floor_target`. The weighted mean linear luminance
        of the curve of ``y * 2**ev`` grows with ``ev``; bisection finds the least ev reaching
        the target (``ev`` itself when it already does), so the exposure *and* the curve together
        never darken an image beyond its floor, whatever the weights (the local gain:
        :meth:`_local_floor`).
        """
        def mean_out(e: torch.Tensor) -> torch.Tensor:
            return self._mean_out(y, w, slopes, e)

        return torch.where(mean_out(ev.detach()) >= target, ev,
                           self._bisect(mean_out, target, ev, torch.full_like(ev, self.ev_hi)))

    def local_grid(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw N x D x G x G outputs -> local gains (stops) that keep local contrast.

        Gains are ``local_ev * tanh(raw)`` (bounded), then projected so that along the
        luminance axis a gain falls by at most :func:`local_step_margins` between two bins:
        ``g'_0 = g_0``, ``g'_{i+1} = max(g_{i+1}, g'_i - m_i)`` (only raises gains, so the bound
        holds). The local map ``y -> y * 2**gain(y)`` is then increasing in ``y`` with a slope of
        at least :data:`LOCAL_CONTRAST_KEEP` of the identity's in log terms: no texture
        inversion, no posterised blotches. A grid that already keeps contrast is unchanged.
        """
        g = self.local_ev * torch.tanh(raw)
        margins = local_step_margins(self.luma_bins)
        planes = [g[:, 0]]
        for i, m in enumerate(margins):
            planes.append(torch.maximum(g[:, i + 1], planes[-1] - m))
        return torch.stack(planes, dim=1)

    def _local_floor(self, y: torch.Tensor, w: torch.Tensor, target: torch.Tensor, grid: torch.Tensor,
                     slopes: torch.Tensor) -> torch.Tensor:
        """Smallest uniform lift (stops, N, >= 0) of the local grid that keeps ``target``.

        ``y`` is the N x 1 x s x s linear luminance after exposure, white balance and colour
        matrix (what the local gain and the curve act on); ``w``, ``target`` from
        :meth:`_floor_target`. The local grid may darken regions by up to ``local_ev`` stops; a
        uniform lift ``c`` changes no slicing guide, so the weighted output mean (curve of
        ``y * 2**(local + c)``) grows with ``c`` and bisection on [0, ``local_ev``] finds the
        least lift reaching the target. With the exposure floor this bounds the darkening of an
        image by the whole edit.
        """
        s_h, s_w = y.shape[2], y.shape[3]
        pos = torch.tensor([0.0, 0.0, float(s_h), float(s_w)], device=y.device)
        rows, cols = pixel_index_grids(y, pos)
        guide = (encode_rgb(y) / CURVE_U_MAX).clamp(0.0, 1.0)
        gain = torch.exp(self._slice_grid(grid.detach(), guide, rows, cols, pos) * _LN2)

        def mean_out(c: torch.Tensor) -> torch.Tensor:
            u = encode_rgb(y * gain * torch.exp(c * _LN2).view(-1, 1, 1, 1)).clamp(0.0, CURVE_U_MAX)
            return _wmean(self._tone(u, slopes), w)

        zero = torch.zeros_like(target)
        return self._bisect(mean_out, target, zero, torch.full_like(target, self.local_ev)).detach()

    def unpack(self, ctx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split the N x (20 + K + D*G*G + M*M) context into its named parts (shapes in the values' comments)."""
        k, d, g = self.curve_knots, self.luma_bins, self.grid_size
        n = ctx.shape[0]
        return {
            "k_flash": ctx[:, 0].view(n, 1, 1, 1),
            "ev_gain": ctx[:, 1].view(n, 1, 1, 1),
            "sat": ctx[:, 2].view(n, 1, 1, 1),
            "gains": ctx[:, 3:6].view(n, 3, 1, 1),
            "matrix": ctx[:, 6:15].view(n, 3, 3),
            "win_gain": ctx[:, 15].view(n, 1, 1, 1),                         # window pull, linear gain
            "view_floor": ctx[:, 16],                                       # N, least view luminance
            "amb_gains": ctx[:, 17:20].view(n, 3, 1, 1),                    # ambient white balance
            "slopes": ctx[:, 20 : 20 + k],                                  # N x K
            "grid": ctx[:, 20 + k : 20 + k + d * g * g].view(n, d, g, g),   # N x D x G x G
            "view": ctx[:, 20 + k + d * g * g :].view(n, 1, VIEW_MAP, VIEW_MAP),  # N x 1 x M x M
        }

    # ------------------------------------------------------------------ apply
    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Tile N x 13 x h x w (linear) + context + pos [y0, x0, H, W] -> sRGB N x 3 x h x w in [0, 1].

        At inference the tile runs in chunks of rows (:data:`CHUNK_PIXELS`) written into one
        output tensor, each skipping the terms that are zero on it (:func:`live_terms`).
        """
        h = x.shape[2]
        p = self.unpack(ctx.to(x.dtype))
        pos = pos.float()
        rows, cols = pixel_index_grids(x, pos)
        if torch.is_grad_enabled() or _in_export():
            return self._apply_rows(x, p, rows, cols, pos)
        step = max(1, CHUNK_PIXELS // max(1, x.shape[0] * x.shape[3]))
        threads = 1 if x.device.type == "cpu" else torch.get_num_threads()
        with torch_threads(threads), torch.inference_mode():
            out = x.new_empty((x.shape[0], 3, h, x.shape[3]))
            for r in range(0, h, step):
                self._apply_rows(x[:, :, r : r + step], p, rows[r : r + step], cols, pos, out=out[:, :, r : r + step])
            return out

    def trace_tones(self, x: torch.Tensor, ctx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Where the tones go: the linear luminance (N x 1 x h x w, no grad) of the whole image
        ``x`` (N x 13 x h x w, linear) after each step of :meth:`apply`, keyed by
        :data:`TONE_STAGES`. ``trace["tone"]`` is the final's luminance before the saturation,
        gamut and highlight-guard steps, which keep it (benchmarks/bench_tone.py reads this)."""
        trace: dict[str, torch.Tensor] = {}
        p = self.unpack(ctx.to(x.dtype))
        pos = torch.tensor([0.0, 0.0, float(x.shape[2]), float(x.shape[3])], device=x.device)
        rows, cols = pixel_index_grids(x, pos)
        with torch.no_grad():
            self._apply_rows(x, p, rows, cols, pos, trace=trace)
        return {k: trace[k] for k in TONE_STAGES}

    def _slice_grid(self, grid: torch.Tensor, guide: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    pos: torch.Tensor) -> torch.Tensor:
        """Trilinear slice of the N x D x G x G grid at absolute pixel coordinates and guide.

        ``guide`` N x 1 x h x w in [0, 1]; ``rows`` (h,), ``cols`` (w,) absolute pixel indices.
        Spatial interpolation is separable (two small matmuls give every bin's plane at the
        tile's pixels), then each pixel blends its two neighbouring bins (two gathers): no
        5-D ``grid_sample``, exportable, exact per pixel (tiles equal the whole image).
        """
        d = self.luma_bins
        planes = self._sample_map(grid, rows, cols, pos)                 # N x D x h x w
        t = guide * (d - 1)
        lo = t.floor().clamp(0.0, float(d - 2))
        frac = t - lo
        idx = lo.long()
        a = torch.gather(planes, 1, idx)
        b = torch.gather(planes, 1, idx + 1)
        return a + frac * (b - a)

    def _sample_map(self, grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Bilinear N x C x h x w sample of N x C x M x M maps spread over the whole image, at
        absolute pixel indices ``rows`` (h,), ``cols`` (w,) of an image of ``pos[2]`` x ``pos[3]``
        (tile-exact; two matmuls, no ``grid_sample``)."""
        m = grid.shape[-1]
        ry = self._interp_matrix((rows + 0.5) / pos[2] * m - 0.5, m)     # h x M
        rx = self._interp_matrix((cols + 0.5) / pos[3] * m - 0.5, m)     # w x M
        return torch.matmul(torch.matmul(ry, grid), rx.t())

    @staticmethod
    def _interp_matrix(u: torch.Tensor, n: int) -> torch.Tensor:
        """(len(u) x n) linear interpolation weights on ``n`` nodes at node coordinates ``u`` (clamped)."""
        u = u.clamp(0.0, float(n - 1))
        nodes = torch.arange(n, dtype=u.dtype, device=u.device)
        return (1.0 - (u[:, None] - nodes[None, :]).abs()).clamp_min(0.0)

    def _tone(self, u: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        """Linear output luminance (N x 1 x h x w, in [0, 1]) of encoded input ``u`` through the
        tone curve: the sRGB decode of :meth:`_curve` (its output is never negative, so the
        decode needs no sign handling)."""
        return srgb_decode_unsigned(self._curve(u, slopes))

    def _curve(self, u: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        """Monotone piecewise-linear curve: u N x 1 x h x w in [0, CURVE_U_MAX] -> [0, 1]."""
        n, k = slopes.shape
        step = CURVE_U_MAX / k
        knots = torch.cat([torch.zeros_like(slopes[:, :1]), torch.cumsum(slopes * step, dim=1)], dim=1)  # N x K+1
        t = u / step
        lo = t.floor().clamp(0.0, float(k - 1))
        idx = lo.long().reshape(n, -1)
        v0 = torch.gather(knots, 1, idx).view_as(u)
        sl = torch.gather(slopes, 1, idx).view_as(u)
        return (v0 + sl * (t - lo) * step).clamp(0.0, 1.0)

    def _apply_rows(self, x: torch.Tensor, p: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor,
                    pos: torch.Tensor, out: torch.Tensor | None = None,
                    trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`apply` on rows of a tile: ``x`` N x 13 x h x w, ``p`` the :meth:`unpack` ed context,
        ``rows`` (h,) and ``cols`` (w,) the absolute pixel indices, ``pos`` as in :meth:`apply`.
        The result is written into ``out`` (N x 3 x h x w, any strides) when given, and returned.
        ``trace``, when given, receives the linear luminance after each step (:data:`TONE_STAGES`)."""
        amb = x[:, AMBIENT]
        live = live_terms(x, p["amb_gains"])
        if live.fill:
            rad, light, clip, sub = merge_frames(x)
            rad = white_balance_ambient(rad, amb, clip, p["amb_gains"])
            if live.window:
                # The window pull scales the window frame's view before it is blended in (no ring
                # at the window's edge, where the blend weight is between 0 and 1).
                matte = (daylight_candidates(x, clip, sub) * above_floor(sub, p["view_floor"])
                         * self._sample_map(p["view"], rows, cols, pos))
                rad = rad + (matte * (p["win_gain"] - 1.0)) * sub
        else:  # no frame fills anything in here: the merge is the ambient frame (clip 0)
            rad = amb * p["amb_gains"] if live.balance else amb
            light = flash_light(x, amb) if live.flash else None
        if trace is not None:
            trace["merge"] = luma(rad)
        if light is not None:
            rad = rad + p["k_flash"] * light
        # White balance and exposure are folded into the colour matrix: M diag(gains * ev).
        n = x.shape[0]
        mat = p["matrix"] * (p["gains"].view(n, 1, 3) * p["ev_gain"].view(n, 1, 1))
        rgb = torch.einsum("nij,njhw->nihw", mat, rad).clamp_min(0.0)
        y = luma(rgb)
        guide = (_encoded(y) / CURVE_U_MAX).clamp(0.0, 1.0)
        local = self._slice_grid(p["grid"], guide, rows, cols, pos)
        rgb = rgb * torch.exp(local * _LN2)
        if trace is not None:
            trace["flash"] = luma(rad)
            trace["exposure"] = y
        y = luma(rgb).clamp_min(1e-8)
        y_out = self._tone(_encoded(y).clamp(0.0, CURVE_U_MAX), p["slopes"])
        if trace is not None:
            trace["local"] = y
            trace["tone"] = y_out
        rgb = rgb * (y_out / y)
        rgb = y_out + p["sat"] * (rgb - y_out)
        rgb = to_gamut(rgb, y_out)
        if live.guard:
            guard = highlight_guard(x, clip, sub) if live.fill else bright_source(amb)
            rgb = rgb + guard * (y_out - rgb)
        if _fast_cpu(rgb):
            dst = torch.empty_like(rgb) if out is None else out
            srgb_encode_into(rgb.numpy(), dst.numpy(), 1.0)  # clips to [0, 1] itself
            return dst
        res = encode_rgb(rgb).clamp(0.0, 1.0)
        if out is None:
            return res
        out.copy_(res)
        return out

"""Training data: a fixed validation split, an in-memory pair cache, paired random crops.

Everything here keeps the input and the target aligned: the same crop, the same flip, the same
small rotation is applied to the HxWx13 linear stack and to the HxWx3 sRGB target. The target's
colour is never jittered (colour is what the models learn; see ../shared/design/RESEARCH.md);
the only colour change is on the input side of a single-image sample made by
:func:`unedit_frame` (a camera-like rendering of the final, which the model learns to edit).

Shapes: stacks are numpy HxWx13 float32 linear light (layout in :mod:`flambient.stack`),
targets HxWx3 float32 sRGB in [0, 1]; batches are torch N x 13 x P x P and N x 3 x P x P.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .dataset import PairItem
from .log import get_logger
from .stack import is_single_image

log = get_logger("data")


def split_items(items: Sequence[PairItem], val_fraction: float, min_val: int = 1) -> tuple[list[PairItem], list[PairItem]]:
    """Split items into (train, validation) by a hash of each item's name.

    The split depends only on the names, not on the order or the seed, so it stays fixed
    across runs, resumes and added items. At least ``min_val`` items (and at least one
    training item) when the dataset has two or more items; a one-item dataset trains and
    validates on the same item.
    """
    items = list(items)
    if len(items) < 2:
        return items, items
    keyed = sorted(items, key=lambda it: hashlib.sha1(it.name.encode()).hexdigest())
    n_val = max(min_val, int(round(len(items) * val_fraction))) if val_fraction > 0 else 0
    n_val = min(n_val, len(items) - 1)
    val_names = {it.name for it in keyed[:n_val]}
    return [it for it in items if it.name not in val_names], [it for it in items if it.name in val_names]


def resize_stack(img: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale an HxWxC float image (any C: a 13-channel stack, an RGB frame) so that its
    long edge is at most ``max_side`` px; never upscales (returned as float32, contiguous).

    Each channel is averaged in its own encoding: linear stack channels in linear light (correct
    for area resampling), an sRGB image in sRGB (what an editor's export resize does).
    """
    h, w = img.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return np.ascontiguousarray(img, dtype=np.float32)
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    chans = [cv2.resize(np.ascontiguousarray(img[:, :, i : i + 4]), size, interpolation=cv2.INTER_AREA)
             for i in range(0, img.shape[2], 4)]  # cv2 resizes at most 4 channels at once
    return np.concatenate([c[:, :, None] if c.ndim == 2 else c for c in chans], axis=2).astype(np.float32)


def resize_pair(stack: np.ndarray, target: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-downscale a (stack, target) pair so that its long edge is at most ``max_side`` px
    (:func:`resize_stack` on each)."""
    if max_side <= 0 or max(stack.shape[:2]) <= max_side:
        return stack, target
    return resize_stack(stack, max_side), resize_stack(target, max_side)


class PairStore:
    """Loads dataset items once (downscaled to ``max_side``) and keeps them in memory.

    Items are kept as float16 (a 384x256 pair takes ~1.6 MB) while the total stays below
    ``cache_mb``; beyond it items are re-read from disk each time they are drawn.
    """

    def __init__(self, items: Sequence[PairItem], max_side: int = 1024, cache_mb: float = 4096.0) -> None:
        self.items = list(items)
        self.max_side = max_side
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._used = 0

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(stack HxWx13 linear float32, target HxWx3 sRGB float32) of item ``i``."""
        hit = self._cache.get(i)
        if hit is not None:
            return hit[0].astype(np.float32), hit[1].astype(np.float32)
        stack, target = resize_pair(*self.items[i].load(), self.max_side)
        size = stack.size * 2 + target.size * 2
        if self._used + size <= self.cache_bytes:
            self._cache[i] = (stack.astype(np.float16), target.astype(np.float16))
            self._used += size
        return stack, target

    def min_side(self) -> int:
        """Smallest image side over all items (loads every item once)."""
        return min(min(self.get(i)[0].shape[:2]) for i in range(len(self)))


@dataclass(frozen=True)
class Augment:
    """Paired augmentations: random crop, flips, small rotations, single-image samples.

    The target is never changed in colour; only :attr:`unedit` renders an input from it.

    Attributes:
        hflip: probability of a left-right flip.
        vflip: probability of an up-down flip (off by default: interiors have a floor).
        rotate_deg: maximum absolute rotation in degrees (uniform), with reflected borders.
        mask_dropout: probability of removing the window mask from a sample (channel 9 and
            the has_mask flag zeroed). ``process`` builds stacks from shoots without a mask,
            so a model must work both with and without one.
        frame_dropout: probability of removing the flash and window-pull frames (and mask):
            the sample becomes a single-image one (one merged exposure -> final), the other
            first-class input of ``process``.
        exposure_jitter: maximum stops (uniform, either sign) by which every frame of a sample
            is scaled in linear light; the target stays, so the model learns to find the
            exposure from the image (single merged images arrive at any exposure).
        unedit: probability that a single-image sample made by ``frame_dropout`` takes as its
            frame a camera-like rendering of the target (:func:`unedit_frame`: a little
            darker, flatter, less saturated, a slight cast) instead of the bracket's ambient
            frame. A real single image is a camera or HDR-merge rendering of the scene, not a
            tungsten-lit ambient frame: without these samples a model learns to strip a warm
            cast (and saturation) from every photograph. Only bracket samples are converted
            (a one-frame pair's source is a real photograph and is kept). A rendered frame
            takes no ``exposure_jitter``: a camera exposes a single image close to its final
            (:data:`UNEDIT_EV`), so the model learns a moderate, content-led lift rather than
            a full normalisation of every photograph to one key.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rotate_deg: float = 3.0
    mask_dropout: float = 0.5
    frame_dropout: float = 0.0
    exposure_jitter: float = 0.0
    unedit: float = 0.0


def _crop_one(stack: np.ndarray, target: np.ndarray, ph: int, pw: int, aug: Augment,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random ``ph`` x ``pw`` crop (the pair must be at least that large)."""
    h, w = stack.shape[:2]
    y = int(rng.integers(0, h - ph + 1))
    x = int(rng.integers(0, w - pw + 1))
    s, t = stack[y : y + ph, x : x + pw], target[y : y + ph, x : x + pw]
    if rng.random() < aug.hflip:
        s, t = s[:, ::-1], t[:, ::-1]
    if rng.random() < aug.vflip:
        s, t = s[::-1], t[::-1]
    s = np.ascontiguousarray(s)
    if aug.mask_dropout > 0 and rng.random() < aug.mask_dropout:
        s = drop_mask(s)
    rendered = False
    if aug.frame_dropout > 0 and rng.random() < aug.frame_dropout:
        rendered = aug.unedit > 0 and not is_single_image(s) and rng.random() < aug.unedit
        s = drop_frames(s, frame=unedit_frame(t, rng)) if rendered else drop_frames(s, target=t)
    if aug.exposure_jitter > 0 and not rendered:  # a rendered frame has its own exposure offset
        gain = np.ones(s.shape[2], dtype=np.float32)
        gain[:9] = 2.0 ** rng.uniform(-aug.exposure_jitter, aug.exposure_jitter)
        s = s * gain  # a new array: the store's cached pair is never modified
    return s, np.ascontiguousarray(t)


def drop_mask(stack: np.ndarray) -> np.ndarray:
    """A copy of an HxWx13 stack without its window mask (as ``ingest.load_set_stack`` builds it)."""
    from .stack import HAS_MASK, MASK

    out = stack.copy()
    out[:, :, MASK] = 0.0
    out[:, :, HAS_MASK] = 0.0
    return out


#: Ranges of :func:`unedit_frame` (uniform): exposure offset (stops), global log-contrast
#: factor, saturation factor (linear light, around the pixel's luminance), cast (log2 of the
#: red / blue gains, opposite signs: warm or cool), tint (log2 of the green gain).
UNEDIT_EV = (-0.6, 0.2)
UNEDIT_CONTRAST = (0.8, 1.0)
UNEDIT_SATURATION = (0.55, 1.0)
UNEDIT_CAST = 0.12
UNEDIT_TINT = 0.04


def unedit_frame(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera-like rendering of an edited final: the frame of a single-image sample.

    Professional edits of single photographs are, on average, brighter, more contrasty and
    more saturated than the camera's rendering, and neutral where the camera left a slight
    cast (e.g. the expert retouches of MIT-Adobe FiveK, Bychkovsky et al., CVPR 2011, brighten
    and saturate nearly every image). This undoes such an edit by a random amount, with global
    operations only (so the model's global transform can invert it): a luminance-preserving
    cast, a saturation cut, a log-contrast flattening about the image's log-mean luminance,
    then an exposure offset (:data:`UNEDIT_EV`, mostly darker). Clipped target whites stay
    neutral (equal channels get equal gains up to the cast, which is bounded).

    Args:
        target: HxWx3 sRGB final in [0, 1].
        rng: the sample's generator (draws 5 numbers).

    Returns:
        HxWx3 float32 linear-light frame (camera white balance, not clipped at 1).
    """
    from .colour import luminance, srgb_to_linear

    lin = srgb_to_linear(np.clip(np.asarray(target[:, :, :3], dtype=np.float32), 0.0, 1.0))
    ev = rng.uniform(*UNEDIT_EV)
    contrast = rng.uniform(*UNEDIT_CONTRAST)
    sat = rng.uniform(*UNEDIT_SATURATION)
    cast = rng.uniform(-UNEDIT_CAST, UNEDIT_CAST)
    tint = rng.uniform(-UNEDIT_TINT, UNEDIT_TINT)
    gains = np.array([2.0 ** cast, 2.0 ** tint, 2.0 ** -cast], dtype=np.float32)
    gains /= float(luminance(gains))  # a cast, not an exposure change
    lin = lin * gains
    y = luminance(lin)[..., None]
    lin = np.maximum(y + np.float32(sat) * (lin - y), 0.0)
    y = np.maximum(y, 1e-4)
    pivot = float(np.exp(np.mean(np.log(y))))
    gain = (y / pivot) ** np.float32(contrast - 1.0) * np.float32(2.0 ** ev)
    return (lin * gain).astype(np.float32)


def drop_frames(stack: np.ndarray, target: np.ndarray | None = None, frame: np.ndarray | None = None) -> np.ndarray:
    """A copy of an HxWx13 stack reduced to one frame (a single-image sample).

    The frame is the stack's ambient frame, or ``frame`` (HxWx3 linear) when given. With the
    sRGB ``target`` given, the ambient frame is scaled (linear light) to the target's mean
    luminance: a single merged image arrives at about its final exposure, unlike the ambient
    frame of a bracket set (often shot a stop bright), so a single-image sample must not
    teach the model to darken. ``exposure_jitter`` then varies it around that.
    """
    from .colour import luminance, srgb_to_linear
    from .stack import AMBIENT, build_stack

    out = build_stack(stack[:, :, AMBIENT] if frame is None else frame).astype(stack.dtype, copy=False)
    if target is not None and frame is None:
        have = float(luminance(np.clip(stack[:, :, AMBIENT], 0.0, 1.0)).mean())
        want = float(luminance(srgb_to_linear(target[:, :, :3])).mean())
        if have > 1e-6 and want > 1e-6:
            out[:, :, AMBIENT] *= np.float32(want / have)
    return out


def rotate_batch(x: torch.Tensor, y: torch.Tensor, angles_deg: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each pair of a batch (N x C x h x w, N x 3 x h x w) about its centre by its angle.

    Bilinear, reflected borders; the same sampling grid for input and target keeps them aligned.
    (On non-square crops the rotation is in normalised coordinates, a slight shear; harmless
    for a few degrees, and identical for input and target.)
    """
    if not np.any(angles_deg):
        return x, y
    th = torch.as_tensor(np.radians(angles_deg), dtype=x.dtype, device=x.device)
    c, s = torch.cos(th), torch.sin(th)
    zero = torch.zeros_like(c)
    mat = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1)  # N x 2 x 3
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    xr = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    yr = F.grid_sample(y, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return xr, yr


def sample_batch(store: PairStore, indices: Sequence[int], crop: int, aug: Augment, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch from items ``indices``: (N x 13 x h x w linear, N x 3 x h x w sRGB).

    Crops are ``crop`` x ``crop``, each side reduced to the smallest height / width among the
    drawn items when they are smaller (so a crop as large as the images trains on whole images).
    """
    pairs = [store.get(int(i)) for i in indices]
    ph = min([crop] + [s.shape[0] for s, _ in pairs])
    pw = min([crop] + [s.shape[1] for s, _ in pairs])
    crops = [_crop_one(s, t, ph, pw, aug, rng) for s, t in pairs]
    x = torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack([c[1] for c in crops])).permute(0, 3, 1, 2).contiguous()
    if aug.rotate_deg > 0:
        x, y = rotate_batch(x, y, rng.uniform(-aug.rotate_deg, aug.rotate_deg, size=len(indices)))
    return x, y.clamp(0.0, 1.0)


def progressive_crop(final_crop: int, progress: float, stages: int = 3, multiple: int = 16) -> int:
    """Crop side for the training ``progress`` in [0, 1]: grows from half of ``final_crop``.

    With ``stages`` = 3 the crop is 1/2, 3/4 and 1 x ``final_crop`` in thirds of the run
    (progressive resolution: small, cheap crops first, whole-room crops at the end), rounded to
    ``multiple``. ``stages`` <= 1 disables it.
    """
    if stages <= 1:
        return final_crop
    k = min(stages - 1, int(progress * stages))
    frac = 0.5 + 0.5 * k / (stages - 1)
    return max(multiple, int(math.ceil(final_crop * frac / multiple)) * multiple)


def epoch_order(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Item indices of one epoch: a seeded permutation, each rank taking every ``world``-th one."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[rank::world] if world > 1 else perm

"""Training losses: L1 + (1 - SSIM) + a colour term in CIELAB (+ an optional tone-distribution
term), on sRGB N x 3 x H x W in [0, 1].

The colour term is the mean Euclidean CIELAB distance (dE76, computed through
:func:`flambient.colour.srgb_to_lab`'s torch path) scaled by 1/100, with the chroma part
(a*, b*) weighted ``chroma_weight`` times the lightness: hue and saturation drift on plain walls
("wall repainting", RESEARCH.md) is the failure it targets. SSIM follows Wang et al. (2004):
11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, computed per channel.

The tone-distribution term (:func:`tone_distribution`, weight ``tone``, 0 by default) is the
1-D Wasserstein distance between the L* histograms of prediction and truth, per image: the mean
absolute difference of their sorted L* values. Per-pixel terms reward the *conditional mean*
of the truth given the input; where the input predicts the truth only loosely (a re-lit ambient
frame against its photograph) that mean is a flattened curve, whose upper tones come out grey
(README, "The upper tones are compressed"). The sorted term asks instead for the truth's
spread of tones, which a monotone tone curve can always give (histogram matching is one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import colour


def _gauss_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    r = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2.0
    g = torch.exp(-(r**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(pred: torch.Tensor, truth: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two N x C x H x W tensors in [0, 1] (valid-region Gaussian statistics).

    Images smaller than the window use a window of their smallest side (odd).
    """
    c = pred.shape[1]
    win = min(window, pred.shape[-1], pred.shape[-2])
    win = win if win % 2 == 1 else win - 1
    k = _gauss_window(win, sigma, c, pred)
    c1, c2 = 0.01**2, 0.03**2
    mu_x = F.conv2d(pred, k, groups=c)
    mu_y = F.conv2d(truth, k, groups=c)
    sxx = F.conv2d(pred * pred, k, groups=c) - mu_x**2
    syy = F.conv2d(truth * truth, k, groups=c) - mu_y**2
    sxy = F.conv2d(pred * truth, k, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def _lab(srgb: torch.Tensor) -> torch.Tensor:
    """CIELAB N x 3 x H x W (L* in [0, 100]) of sRGB N x 3 x H x W, clamped to [0, 1] first."""
    return colour.srgb_to_lab(srgb.float().clamp(0.0, 1.0), channel_axis=1)


def lab_distance(pred: torch.Tensor, truth: torch.Tensor, chroma_weight: float = 2.0) -> torch.Tensor:
    """Mean weighted CIELAB distance between sRGB N x 3 x H x W images, in Lab units.

    ``sqrt(dL^2 + chroma_weight * (da^2 + db^2) + eps)``; eps keeps the gradient finite at 0.
    """
    return _lab_distance(_lab(pred), _lab(truth), chroma_weight)


def _lab_distance(lp: torch.Tensor, lt: torch.Tensor, chroma_weight: float) -> torch.Tensor:
    d = lp - lt
    return torch.sqrt(d[:, 0] ** 2 + chroma_weight * (d[:, 1] ** 2 + d[:, 2] ** 2) + 1e-4).mean()


def tone_distribution(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean over images of the 1-D Wasserstein distance between the L* values of ``pred`` and
    ``truth`` (sRGB N x 3 x H x W in [0, 1]), in L* units: sort each image's L*, average the
    absolute differences. Blind to where a tone is, so 0 for any rearrangement of the truth's
    pixels: alone it fits only what a global tone map can change (the shipped default's stage 7
    trains its curve and exposure key on it alone); with anything local, beside per-pixel terms."""
    return _tone_distribution(_lab(pred)[:, 0], _lab(truth)[:, 0])


def _tone_distribution(lp: torch.Tensor, lt: torch.Tensor) -> torch.Tensor:
    sp = torch.sort(lp.flatten(1), dim=1).values
    st = torch.sort(lt.flatten(1), dim=1).values
    return (sp - st).abs().mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms (set from the training config); ``tone`` weighs
    :func:`tone_distribution` (in L* / 100, like the colour term)."""

    l1: float = 1.0
    ssim: float = 0.2
    lab: float = 0.5
    chroma_weight: float = 2.0
    tone: float = 0.0


def blend_loss(pred: torch.Tensor, truth: torch.Tensor, w: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (as floats, for the log) for sRGB predictions vs targets."""
    l1 = (pred - truth).abs().mean()
    s = 1.0 - ssim(pred.float(), truth.float()) if w.ssim > 0 else torch.zeros((), device=pred.device)
    zero = torch.zeros((), device=pred.device)
    lp, lt = (_lab(pred), _lab(truth)) if w.lab > 0 or w.tone > 0 else (None, None)
    lab = _lab_distance(lp, lt, w.chroma_weight) / 100.0 if w.lab > 0 else zero
    tone = _tone_distribution(lp[:, 0], lt[:, 0]) / 100.0 if w.tone > 0 else zero
    total = w.l1 * l1 + w.ssim * s + w.lab * lab + w.tone * tone
    parts = {"l1": float(l1.detach()), "ssim": float(s.detach()), "lab": float(lab.detach())}
    if w.tone > 0:
        parts["tone"] = float(tone.detach())
    return total, parts

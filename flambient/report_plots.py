"""The report's two plots as inline SVG: the pooled CIEDE2000 histogram per method and the
fitted tone curve of every image (no plotting library, no external files)."""

from __future__ import annotations

import html

import numpy as np

from .evaluate import DE_BINS, EvalResult

#: Line colours of the methods in the plots (model first).
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e")


def _svg_frame(w: int, h: int, pad: int, xlabel: str, ylabel: str, xticks: list[float], yticks: list[float],
               x_max: float, y_max: float) -> list[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>']
    iw, ih = w - 2 * pad, h - 2 * pad
    for t in xticks:
        x = pad + iw * t / x_max
        parts.append(f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{pad + ih}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{pad + ih + 14}" text-anchor="middle">{t:g}</text>')
    for t in yticks:
        y = pad + ih - ih * t / y_max
        parts.append(f'<line x1="{pad}" y1="{y:.1f}" x2="{pad + iw}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{pad - 4}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<rect x="{pad}" y="{pad}" width="{iw}" height="{ih}" fill="none" stroke="#888"/>')
    parts.append(f'<text x="{pad + iw / 2}" y="{h - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{pad + ih / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {pad + ih / 2})">{html.escape(ylabel)}</text>')
    return parts


def de_histogram_svg(result: EvalResult, w: int = 460, h: int = 280) -> str:
    """Share of pixels per CIEDE2000 bin (pooled over all images), one line per method."""
    pad = 44
    hists = {"model": result.model.de_hist}
    hists.update({name: ms.de_hist for name, ms in result.baselines.items()})
    shares = {k: v / max(float(v.sum()), 1.0) for k, v in hists.items()}
    y_max = max(0.05, max(float(s.max()) for s in shares.values()) * 1.1)
    x_max = float(DE_BINS[-1])
    step = 0.1 if y_max > 0.3 else 0.05
    parts = _svg_frame(w, h, pad, "CIEDE2000 (last bin: 29 and above)", "share of pixels",
                       [0, 5, 10, 15, 20, 25, 30], [round(i * step, 2) for i in range(int(y_max / step) + 1)],
                       x_max, y_max)
    iw, ih = w - 2 * pad, h - 2 * pad
    centres = 0.5 * (DE_BINS[:-1] + DE_BINS[1:])
    for i, (name, s) in enumerate(shares.items()):
        col = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{pad + iw * c / x_max:.1f},{pad + ih - ih * v / y_max:.1f}" for c, v in zip(centres, s))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="2"/>')
        parts.append(f'<text x="{w - pad - 4}" y="{pad + 14 + 14 * i}" text-anchor="end" fill="{col}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def tone_curves_svg(result: EvalResult, w: int = 300, h: int = 280) -> str:
    """The fitted tone curve (prediction L* -> truth L*) of every image, and the identity."""
    pad = 44
    ticks = [0, 25, 50, 75, 100]
    parts = _svg_frame(w, h, pad, "prediction L*", "truth L* (fitted)", ticks, ticks, 100.0, 100.0)
    iw, ih = w - 2 * pad, h - 2 * pad
    parts.append(f'<line x1="{pad}" y1="{pad + ih}" x2="{pad + iw}" y2="{pad}" stroke="#999" stroke-dasharray="4 3"/>')
    n = max(1, len(result.images))
    opacity = max(0.15, min(0.9, 3.0 / n))
    for r in result.images:
        if r.tone is None:
            continue
        x, y = r.tone
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 2:
            continue
        pts = " ".join(f"{pad + iw * a / 100:.1f},{pad + ih - ih * b / 100:.1f}" for a, b in zip(x[ok], y[ok]))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[0]}" stroke-opacity="{opacity:.2f}" '
                     f'stroke-width="1.5"><title>{html.escape(r.name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)

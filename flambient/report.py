"""The ``eval`` report: one self-contained HTML file (no external files, no network).

Contents: the summary table (the model and each baseline, mean of every metric; the model's
mean / median / 95th percentile), missing partners and failures, two inline SVG plots (pooled
CIEDE2000 histogram per method; the fitted tone curve of every image), and one row per image
with input / prediction / truth / dE heat-map thumbnails (inline base64 JPEG) and its metrics.
Clicking a column header sorts the image rows by that column (a few lines of inline JS).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import metrics
from .evaluate import DE_BINS, EvalResult, format_value
from .io.atomic import atomic_write_text
from .io.images import encode_jpeg

#: Line colours of the methods in the plots (model first).
_PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td.name,th.name{text-align:left}
#images th.sortable{cursor:pointer} #images th.sortable:hover{background:#e2e8f0}
#images th.asc::after{content:" \\25B2"} #images th.desc::after{content:" \\25BC"}
td.best{font-weight:bold;color:#0a7d28}
img.t{height:96px;display:block;border:1px solid #ccc}
.plots{display:flex;gap:24px;flex-wrap:wrap}
.plots figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px}
figcaption{font-size:12px;color:#555;margin-top:4px}
.warn{color:#a15c00;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}
"""

_JS = """
(function(){
  var table=document.getElementById('images'); if(!table) return;
  var ths=Array.prototype.slice.call(table.querySelectorAll('th.sortable'));
  function sortBy(th, asc){
    var col=parseInt(th.dataset.col);
    ths.forEach(function(o){o.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=a.cells[col].dataset.v, y=b.cells[col].dataset.v;
      var nx=parseFloat(x), ny=parseFloat(y);
      if(isNaN(nx)&&isNaN(ny)) return asc? x.localeCompare(y): y.localeCompare(x);
      if(isNaN(nx)) return 1; if(isNaN(ny)) return -1;
      return asc? nx-ny : ny-nx;
    });
    rows.forEach(function(r){body.appendChild(r);});
  }
  ths.forEach(function(th){
    th.addEventListener('click',function(){ sortBy(th, !th.classList.contains('asc')); });
  });
  // report.html#sort=KEY (ascending) or #sort=-KEY (descending) opens sorted.
  var m=/sort=(-?)([A-Za-z0-9_ ]+)/.exec(decodeURIComponent(location.hash));
  if(m){ ths.forEach(function(th){ if(th.dataset.key===m[2]) sortBy(th, m[1]!=='-'); }); }
})();
"""


def _img_tag(img: np.ndarray | None, alt: str) -> str:
    if img is None:
        return '<span class="meta">-</span>'
    data = base64.b64encode(encode_jpeg(img, quality=80, icc=False)).decode("ascii")
    return f'<img class="t" alt="{html.escape(alt)}" src="data:image/jpeg;base64,{data}">'


def _num(v: float | None) -> str:
    return "nan" if v is None or not math.isfinite(v) else repr(float(v))


def _metric_keys(result: EvalResult) -> list[str]:
    keys = list(metrics.METRIC_KEYS)
    for r in result.images:
        keys += [k for k in r.metrics if k not in keys]
    return keys


def _best(key: str, values: list[float | None]) -> int | None:
    vals = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(vals) < 2 or len({round(v, 9) for _, v in vals}) == 1:
        return None
    if key == "exposure_ev":
        return min(vals, key=lambda iv: abs(iv[1]))[0]
    pick = max if key in metrics.HIGHER_IS_BETTER else min
    return pick(vals, key=lambda iv: iv[1])[0]


def summary_html(result: EvalResult) -> str:
    """The summary tables: methods x metric means, and the model's mean / median / p95."""
    keys = _metric_keys(result)
    methods = {"model": result.model.aggregate()}
    methods.update({name: ms.aggregate() for name, ms in result.baselines.items()})
    head = "".join(f"<th>{html.escape(k)}{' &uarr;' if k in metrics.HIGHER_IS_BETTER else ''}</th>" for k in keys)
    rows = []
    best = {k: _best(k, [agg.get(k) for agg in methods.values()]) for k in keys}
    for i, (name, agg) in enumerate(methods.items()):
        cells = "".join(
            f'<td class="{"best" if best[k] == i else ""}">{format_value(k, agg.get(k))}</td>' for k in keys
        )
        rows.append(f'<tr><td class="name">{html.escape(name)}</td>{cells}</tr>')
    out = [f'<div class="scroll"><table id="summary"><thead><tr><th class="name">method (mean)</th>{head}</tr></thead>'
           f'<tbody>{"".join(rows)}</tbody></table></div>']
    stats = result.model.stats()
    srows = "".join(
        f'<tr><td class="name">{stat}</td>'
        + "".join(f"<td>{format_value(k, stats[k][stat])}</td>" for k in keys if k in stats)
        + "</tr>"
        for stat in ("mean", "median", "p95")
    )
    shead = "".join(f"<th>{html.escape(k)}</th>" for k in keys if k in stats)
    out.append(f'<h2>Model: mean, median and 95th percentile over images</h2><div class="scroll"><table id="stats"><thead>'
               f'<tr><th class="name">statistic</th>{shead}</tr></thead><tbody>{srows}</tbody></table></div>')
    return "\n".join(out)


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
        col = _PALETTE[i % len(_PALETTE)]
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
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_PALETTE[0]}" stroke-opacity="{opacity:.2f}" '
                     f'stroke-width="1.5"><title>{html.escape(r.name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


def images_html(result: EvalResult) -> str:
    """The per-image table (thumbnails + metrics), sortable by clicking a header."""
    keys = _metric_keys(result)
    views = ("input", "pred", "truth", "error")
    head = ['<th class="name sortable" data-col="0" data-key="name">image</th>']
    head += [f"<th>{v if v != 'error' else 'dE map'}</th>" for v in views]
    head += [f'<th class="sortable" data-col="{i + 1 + len(views)}" data-key="{html.escape(k)}">{html.escape(k)}</th>'
             for i, k in enumerate(keys)]
    if result.baselines:
        base = 1 + len(views) + len(keys)
        head += [f'<th class="sortable" data-col="{base + i}" data-key="dE {html.escape(n)}">dE {html.escape(n)}</th>'
                 for i, n in enumerate(result.baselines)]
    rows = []
    for r in result.images:
        cells = [f'<td class="name" data-v="{html.escape(r.name)}">{html.escape(r.name)}</td>']
        cells += [f"<td>{_img_tag(r.views.get(v), f'{r.name} {v}')}</td>" for v in views]
        cells += [f'<td data-v="{_num(r.metrics.get(k))}">{format_value(k, r.metrics.get(k))}</td>' for k in keys]
        for n in result.baselines:
            v = r.baseline_metrics.get(n, {}).get("delta_e2000")
            cells.append(f'<td data-v="{_num(v)}">{format_value("delta_e2000", v)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table id="images"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def render_report(result: EvalResult, title: str = "flambient eval") -> str:
    """The whole report as one HTML string (self-contained)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = []
    if result.missing:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in result.missing)
        notes.append(f'<h2>Missing partners ({len(result.missing)})</h2><ul class="warn">{items}</ul>')
    if result.failed:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in result.failed)
        notes.append(f'<h2>Failed images ({len(result.failed)})</h2><ul class="warn">{items}</ul>')
    src = f"predictions {html.escape(str(result.pred_dir))} vs truth {html.escape(str(result.truth_dir))}"
    if result.inputs is not None:
        src += f"; inputs {html.escape(str(result.inputs))}"
    legend = ("psnr in dB; ssim / ms_ssim in 0-1; delta_e2000 (mean per image) and delta_e2000_p95 in CIEDE2000 "
              "units; delta_rgb mean |difference| of sRGB values (0-1); wb_error in degrees; tone_curve in L*; "
              "exposure_ev in stops (+ = brighter than truth); clipped = share of pixels clipped or crushed "
              "where the truth is not; flip = mean LDR-FLIP. &uarr; = higher is better; bold = best method.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}: {len(result.images)} image(s)</h1>
<div class="meta">{src} &middot; {when}</div>
<h2>Summary</h2>
{summary_html(result)}
<p class="meta">{legend}</p>
{"".join(notes)}
<h2>Plots</h2>
<div class="plots">
<figure>{de_histogram_svg(result)}<figcaption>CIEDE2000 per pixel, pooled over all images</figcaption></figure>
<figure>{tone_curves_svg(result)}<figcaption>Fitted tone curve per image (dashed: identity)</figcaption></figure>
</div>
<h2>Images (click a header to sort)</h2>
{images_html(result)}
<script>{_JS}</script>
</body></html>
"""


def write_report(result: EvalResult, path: str | Path, title: str = "flambient eval") -> Path:
    """Write the self-contained ``report.html`` atomically; returns its path."""
    atomic_write_text(path, render_report(result, title))
    return Path(path)

"""The ``eval`` report: one self-contained HTML file (no external files, no network).

Top to bottom: a header (what was compared, the model, preset and flambient version behind the
finals, and a one-sentence verdict from :func:`flambient.verdict.verdict`); a summary table
(one row per metric, with what it means: the finals' mean / median / 95th percentile and each
baseline's mean, the best mean in bold); two inline SVG plots (:mod:`flambient.report_plots`);
then one row per image: a before/after slider (the finals against the editor's), the input and
the CIEDE2000 heat map with its colour bar, each enlarged on click, and the image's metrics
(beside each baseline's). The layout fits a 1400 px window without horizontal scrolling.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, metrics
from .evaluate import HEATMAP_MAX_DE, EvalResult, ImageResult, View, format_value
from .io.atomic import atomic_write_text
from .report_assets import CSS, JS, colour_bar_html
from .report_plots import de_histogram_svg, tone_curves_svg
from .verdict import de_words, verdict

__all__ = ["de_histogram_svg", "images_html", "render_report", "summary_html", "tone_curves_svg", "write_report"]

#: What each metric measures, for the summary table (units; which way is better).
METRIC_NOTES = {
    "psnr": "signal to noise, dB; higher is better",
    "ssim": "structure, 0-1; higher is better",
    "ms_ssim": "structure at 5 scales, 0-1; higher is better",
    "delta_e2000": "mean colour difference (CIEDE2000); under 2 is hard to see",
    "delta_e2000_p95": "colour difference of the worst 5 % of pixels",
    "delta_rgb": "mean |difference| of sRGB values, 0-1",
    "wb_error": "white balance of neutral surfaces, degrees",
    "tone_curve": "tone curve difference, L* units",
    "exposure_ev": "exposure, stops; + = brighter than the editor's",
    "clipped": "share of pixels clipped or crushed where the editor's are not",
    "flip": "perceived difference (LDR-FLIP), 0-1",
    "window_delta_e": "colour difference inside windows (CIEDE2000)",
}


def _img(view: View | None, alt: str, cls: str = "v") -> str:
    """A picture (inline base64 JPEG; class ``v`` enlarges on click), or a dash when there is none."""
    if view is None:
        return '<span class="meta">-</span>'
    data = base64.b64encode(view.jpeg).decode("ascii")
    return (f'<img class="{cls}" alt="{html.escape(alt)}" width="{view.width}" height="{view.height}" '
            f'src="data:image/jpeg;base64,{data}">')


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
    """The summary table: one row per metric; finals mean / median / p95, each baseline's mean."""
    stats = result.model.stats()
    b_aggs = {name: ms.aggregate() for name, ms in result.baselines.items()}
    head = ('<th class="name">metric</th><th class="name">what it measures</th><th>finals mean</th>'
            '<th>median</th><th>95th pct</th>' + "".join(f"<th>{html.escape(n)} mean</th>" for n in b_aggs))
    rows = []
    for key in _metric_keys(result):
        st = stats.get(key, {})
        means = [st.get("mean")] + [agg.get(key) for agg in b_aggs.values()]
        best = _best(key, means)
        cls = ['best' if best == i else '' for i in range(len(means))]
        cells = [f'<td class="{cls[0]}">{format_value(key, means[0])}</td>',
                 f"<td>{format_value(key, st.get('median'))}</td>", f"<td>{format_value(key, st.get('p95'))}</td>"]
        cells += [f'<td class="{cls[i + 1]}">{format_value(key, v)}</td>' for i, v in enumerate(means[1:])]
        rows.append(f'<tr><td class="name">{html.escape(key)}</td>'
                    f'<td class="what">{html.escape(METRIC_NOTES.get(key, ""))}</td>{"".join(cells)}</tr>')
    return (f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="meta">Means over images; bold = best mean among the finals and the baselines.</p>')


def _compare_html(r: ImageResult) -> str:
    """The before/after slider: the finals (left of the divider) over the editor's (right)."""
    pred, truth = r.views.get("pred"), r.views.get("truth")
    if pred is None or truth is None:
        return _img(pred or truth, r.name)
    name = html.escape(r.name)
    return (f'<div class="cmp" style="--ar:{truth.width / truth.height:.4f}" data-title="{name}: flambient | editor">'
            f'{_img(truth, f"{r.name} editor", "under")}{_img(pred, f"{r.name} flambient", "over")}'
            '<div class="bar"></div><span class="lab l">flambient</span><span class="lab r">editor</span>'
            f'<input type="range" min="0" max="100" value="50" step="0.5" aria-label="{name}: divider">'
            '<button class="zoom" type="button">enlarge</button></div>')


def _views_html(r: ImageResult) -> str:
    """Slider on the left; the input and the dE heat map (with its colour bar) on the right."""
    side = []
    if "input" in r.views:
        side.append(f'<figure class="v">{_img(r.views["input"], f"{r.name} input")}'
                    "<figcaption>input (before)</figcaption></figure>")
    if "error" in r.views:
        side.append(f'<figure class="v">{_img(r.views["error"], f"{r.name} dE map")}'
                    f"<figcaption>where the colours differ</figcaption>{colour_bar_html(HEATMAP_MAX_DE)}</figure>")
    return (f'<div class="views"><div class="main">{_compare_html(r)}</div>'
            f'<div class="side">{"".join(side)}</div></div>')


def _metrics_html(r: ImageResult, keys: list[str], baselines: list[str]) -> str:
    """One image's metrics (finals, then each baseline) as a small table."""
    head = "<th>finals</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in baselines)
    rows = []
    for k in keys:
        v = r.metrics.get(k)
        cells = f'<td data-v="{_num(v)}">{format_value(k, v)}</td>'
        for n in baselines:
            b = r.baseline_metrics.get(n, {}).get(k)
            cells += f'<td data-b="{html.escape(n)}" data-v="{_num(b)}">{format_value(k, b)}</td>'
        rows.append(f'<tr data-key="{html.escape(k)}"><th>{html.escape(k)}</th>{cells}</tr>')
    return f'<table class="m"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _reading_html(r: ImageResult) -> str:
    """Under the image's name: its mean dE and a rough plain reading of it."""
    de = r.metrics.get("delta_e2000")
    if de is None or not math.isfinite(de):
        return ""
    return f'<div class="reading">dE {de:.1f}: {html.escape(de_words(de))}</div>'


def images_html(result: EvalResult) -> str:
    """One row per image (views + metrics), sortable with the header's controls or ``#sort=``."""
    keys = _metric_keys(result)
    baselines = list(result.baselines)
    sort_keys = keys + [f"dE {n}" for n in baselines]
    buttons = "".join(f'<span class="sortable" data-key="{html.escape(k)}">{html.escape(k)}</span>' for k in sort_keys)
    metrics_px = 220 + 62 * len(baselines)
    head = ('<th class="name sortable" data-key="name">image</th>'
            '<th>flambient | editor (drag the divider); input; colour difference &middot; click to enlarge</th>'
            f'<th class="sortbar">sort by {buttons}</th>')
    rows = [f'<tr><td class="name" data-v="{html.escape(r.name)}">{html.escape(r.name)}{_reading_html(r)}</td>'
            f"<td>{_views_html(r)}</td><td>{_metrics_html(r, keys, baselines)}</td></tr>" for r in result.images]
    return (f'<table id="images"><colgroup><col style="width:110px"><col><col style="width:{metrics_px}px">'
            f'</colgroup><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def header_html(result: EvalResult, title: str) -> str:
    """Title, verdict, model / preset / version of the finals, what was compared and when."""
    prov = result.provenance
    items = [("model", (prov.model if prov else None) or "unknown (no sidecars; eval --model)"),
             ("preset", (prov.preset if prov else None) or "unknown (no sidecars; eval --preset)"),
             ("finals made by", f"flambient {prov.finals_version}" if prov and prov.finals_version else "unknown"),
             ("report by", f"flambient {__version__}"),
             ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    dl = "".join(f"<div><dt>{k}</dt><dd>{html.escape(v)}</dd></div>" for k, v in items)
    src = f"finals {html.escape(str(result.pred_dir))} against the editor's {html.escape(str(result.truth_dir))}"
    if result.inputs is not None:
        src += f"; inputs {html.escape(str(result.inputs))}"
    if prov is not None and prov.finals:
        src += f"; {prov.with_sidecar} of {prov.finals} finals have a flambient sidecar"
    return (f"<h1>{html.escape(title)}: {len(result.images)} image(s)</h1>"
            f'<p class="verdict" id="verdict">{html.escape(verdict(result))}</p>'
            f'<dl class="prov">{dl}</dl><div class="meta">{src}</div>')


def _notes_html(result: EvalResult) -> str:
    notes = []
    for label, items in (("Missing partners", result.missing), ("Failed images", result.failed)):
        if items:
            lis = "".join(f"<li>{html.escape(m)}</li>" for m in items)
            notes.append(f'<h2>{label} ({len(items)})</h2><ul class="warn">{lis}</ul>')
    return "".join(notes)


def render_report(result: EvalResult, title: str = "flambient eval") -> str:
    """The whole report as one HTML string (self-contained)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head><body>
<header>{header_html(result, title)}</header>
{_notes_html(result)}
<div class="top">
<div><h2>Summary</h2>{summary_html(result)}</div>
<div><h2>Plots</h2><div class="plots">
<figure>{de_histogram_svg(result)}<figcaption>CIEDE2000 per pixel, pooled over all images</figcaption></figure>
<figure>{tone_curves_svg(result)}<figcaption>Fitted tone curve per image (dashed: identity)</figcaption></figure>
</div></div>
</div>
<h2>Images</h2>
{images_html(result)}
<div id="lightbox" hidden><div class="lb-body"></div><div class="cap"></div></div>
<script>{JS}</script>
</body></html>
"""


def write_report(result: EvalResult, path: str | Path, title: str = "flambient eval") -> Path:
    """Write the self-contained ``report.html`` atomically; returns its path."""
    atomic_write_text(path, render_report(result, title))
    return Path(path)

"""Inline style, script and the heat-map colour bar of the eval report.

Everything is inline so ``report.html`` is one file that works offline. The script does three
things, none of which the page needs to be read: the before/after sliders (a range input over
two stacked pictures, the upper one clipped), click-to-enlarge (a clone of the picture or the
slider in a full-window overlay; Esc or a click outside closes it) and sorting the image rows
(``report.html#sort=KEY`` ascending, ``#sort=-KEY`` descending).
"""

from __future__ import annotations

import html
from functools import lru_cache

import numpy as np

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1600px;padding:20px 24px;
color:#222;background:#fafafa;font-size:14px}
h1{font-size:24px;margin:0 0 8px} h2{font-size:18px;margin:26px 0 8px}
.verdict{font-size:18px;line-height:1.45;margin:6px 0 12px;padding:10px 14px;background:#fff;
border-left:5px solid #1f77b4;max-width:1100px}
.prov{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0 0 6px;font-size:14px}
.prov div{max-width:100%} .prov dt{display:inline;color:#666}
.prov dd{display:inline;margin:0 0 0 5px;font-weight:600;overflow-wrap:anywhere}
.meta{color:#666;font-size:13px;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f0f0f0}
td.name,th.name,td.what{text-align:left}
td.what{color:#555;font-size:12px;max-width:300px}
td.best{font-weight:bold;color:#0a7d28}
.top{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
.top > div{min-width:0;max-width:100%}
.plots{display:flex;gap:14px;flex-wrap:wrap}
.plots figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px;max-width:100%}
svg{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555;margin-top:4px}
.warn{color:#a15c00;font-size:13px;overflow-wrap:anywhere}
#images{width:100%;table-layout:fixed}
#images > thead th{position:sticky;top:0;z-index:2;text-align:left;vertical-align:top}
#images > tbody > tr > td{vertical-align:top;text-align:left}
#images td.name{font-weight:600;overflow-wrap:anywhere}
#images td.name .reading{font-weight:normal;font-size:12px;color:#555;margin-top:4px}
.sortable{cursor:pointer}
.sortbar{font-weight:normal;font-size:12px}
.sortbar .sortable{display:inline-block;padding:0 5px;margin:1px;border:1px solid #bbb;border-radius:3px;
background:#fff}
.sortable:hover{background:#e2e8f0}
.sortable.asc::after{content:" \\25B2"} .sortable.desc::after{content:" \\25BC"}
.views{display:flex;gap:10px;align-items:flex-start}
.views .main{flex:2 1 0;min-width:0} .views .side{flex:1 1 0;min-width:0;display:flex;flex-direction:column;gap:8px}
figure.v{margin:0}
img.v{display:block;width:100%;height:auto;cursor:zoom-in;border:1px solid #ccc}
.cmp{position:relative;overflow:hidden;border:1px solid #ccc;user-select:none;background:#000}
.cmp img{display:block;width:100%;height:auto}
.cmp img.over{position:absolute;top:0;left:0;height:100%;clip-path:inset(0 50% 0 0)}
.cmp .bar{position:absolute;top:0;bottom:0;left:50%;width:2px;margin-left:-1px;background:#fff;
box-shadow:0 0 3px #000;pointer-events:none}
.cmp input{position:absolute;top:0;left:0;width:100%;height:100%;margin:0;opacity:0;cursor:ew-resize}
.cmp .lab{position:absolute;top:6px;padding:2px 6px;font-size:12px;color:#fff;background:rgba(0,0,0,.6);
pointer-events:none}
.cmp .lab.l{left:6px} .cmp .lab.r{right:6px}
button.zoom{position:absolute;right:6px;bottom:6px;z-index:1;font-size:12px;padding:2px 8px;cursor:zoom-in;
border:1px solid #888;border-radius:3px;background:rgba(255,255,255,.9)}
.cbar{margin-top:3px} .cbar .grad{height:10px;border:1px solid #ccc}
.cbar .ticks{display:flex;justify-content:space-between;font-size:11px;color:#444}
.cbar .unit{font-size:11px;color:#555}
table.m{width:100%;font-size:12px}
table.m th,table.m td{padding:2px 5px}
table.m th{background:#f7f7f7;font-weight:normal;text-align:left;overflow-wrap:anywhere}
table.m thead th{text-align:right}
#lightbox{position:fixed;top:0;left:0;right:0;bottom:0;background:rgba(0,0,0,.88);z-index:10;display:flex;
flex-direction:column;align-items:center;justify-content:center;padding:16px}
#lightbox[hidden]{display:none}
#lightbox img.v{max-width:96vw;max-height:88vh;width:auto;cursor:zoom-out}
#lightbox .cmp{width:min(96vw,calc(88vh * var(--ar)))}
#lightbox button.zoom{display:none}
#lightbox .cap{color:#eee;font-size:14px;margin-top:8px}
"""

JS = """
(function(){
  document.addEventListener('input', function(e){
    var r=e.target; if(!r.matches||!r.matches('.cmp input')) return;
    var c=r.closest('.cmp'), v=parseFloat(r.value);
    c.querySelector('img.over').style.clipPath='inset(0 '+(100-v)+'% 0 0)';
    c.querySelector('.bar').style.left=v+'%';
  });
  var box=document.getElementById('lightbox');
  var body=box?box.querySelector('.lb-body'):null, cap=box?box.querySelector('.cap'):null;
  function open(node, text){ body.innerHTML=''; body.appendChild(node.cloneNode(true));
    cap.textContent=text||''; box.hidden=false; }
  function close(){ box.hidden=true; body.innerHTML=''; }
  document.addEventListener('click', function(e){
    var t=e.target; if(!box) return;
    if(!box.hidden){ if(!t.closest('#lightbox .cmp')) close(); return; }
    if(t.matches('img.v')) open(t, t.alt);
    else if(t.matches('button.zoom')){ var c=t.closest('.cmp'); open(c, c.dataset.title); }
  });
  document.addEventListener('keydown', function(e){ if(e.key==='Escape'&&box&&!box.hidden) close(); });

  var table=document.getElementById('images'); if(!table) return;
  var ctrls=Array.prototype.slice.call(table.tHead.querySelectorAll('.sortable'));
  function value(row, key){
    if(key==='name') return row.cells[0].dataset.v;
    var sel=key.indexOf('dE ')===0 ? 'tr[data-key="delta_e2000"] td[data-b="'+key.slice(3)+'"]'
                                    : 'tr[data-key="'+key+'"] td[data-v]';
    var cell=row.cells[2].querySelector(sel); return cell? cell.dataset.v : 'nan';
  }
  function sortBy(el, asc){
    var key=el.dataset.key;
    ctrls.forEach(function(o){o.classList.remove('asc','desc');});
    el.classList.add(asc?'asc':'desc');
    var tb=table.tBodies[0], rows=Array.prototype.slice.call(tb.rows);
    rows.sort(function(a,b){
      var x=value(a,key), y=value(b,key), nx=parseFloat(x), ny=parseFloat(y);
      if(isNaN(nx)&&isNaN(ny)) return asc? x.localeCompare(y): y.localeCompare(x);
      if(isNaN(nx)) return 1; if(isNaN(ny)) return -1;
      return asc? nx-ny : ny-nx;
    });
    rows.forEach(function(r){tb.appendChild(r);});
  }
  ctrls.forEach(function(el){
    el.addEventListener('click', function(){ sortBy(el, !el.classList.contains('asc')); });
  });
  var m=/sort=(-?)([A-Za-z0-9_ ]+)/.exec(decodeURIComponent(location.hash));
  if(m){ ctrls.forEach(function(el){ if(el.dataset.key===m[2]) sortBy(el, m[1]!=='-'); }); }
})();
"""


@lru_cache(maxsize=4)
def colour_bar_html(vmax: float, ticks: int = 5) -> str:
    """A horizontal colour bar of the heat map ('inferno', 0..``vmax`` CIEDE2000) as HTML/CSS.

    ``ticks`` labels at equal steps; the last reads ``vmax+`` (larger values are clipped).
    """
    from matplotlib import colormaps

    rgb = colormaps["inferno"](np.linspace(0.0, 1.0, 11))[:, :3]
    stops = ",".join(f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {i * 10}%" for i, (r, g, b) in enumerate(rgb))
    labels = [f"{vmax * i / (ticks - 1):g}" for i in range(ticks)]
    labels[-1] += "+"
    spans = "".join(f"<span>{html.escape(t)}</span>" for t in labels)
    return (f'<div class="cbar"><div class="grad" style="background:linear-gradient(to right,{stops})"></div>'
            f'<div class="ticks">{spans}</div><div class="unit">colour difference per pixel, CIEDE2000 '
            f'(&Delta;E<sub>00</sub>): under 2 hard to see</div></div>')

"""Tests of the eval report: header (model, preset, version, verdict), colour bar, self-contained
views, ``metrics.json`` header fields, ``eval --json -``, and the page in headless Chromium."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flambient import __version__
from flambient.cli import main
from flambient.evaluate import EvalResult, ImageResult, MethodScores, evaluate
from flambient.io.images import read_srgb
from flambient.batch.sidecar import Sidecar, write_sidecar
from flambient.provenance import read_provenance
from flambient.report import render_report, write_report
from flambient.report_render import dump_dom, find_chromium, screenshot
from flambient.verdict import verdict

from eval_fixtures import eval_dirs  # noqa: F401  (fixture)

# ----------------------------------------------------------------------------- verdict


def _result(model_de: list[float], lum_de: list[float] | None = None, amb_de: list[float] | None = None,
            failed: int = 0) -> EvalResult:
    images = []
    for i, de in enumerate(model_de):
        r = ImageResult(name=f"room_{i:02d}", metrics={"delta_e2000": de}, pred=Path("p"), truth=Path("t"))
        if lum_de is not None:
            r.baseline_metrics["luminosity"] = {"delta_e2000": lum_de[i]}
        if amb_de is not None:
            r.baseline_metrics["ambient"] = {"delta_e2000": amb_de[i]}
        images.append(r)
    res = EvalResult(pred_dir=Path("p"), truth_dir=Path("t"), images=images, missing=[],
                     failed=[f"bad {i}" for i in range(failed)])
    if lum_de is not None:
        res.baselines["luminosity"] = MethodScores()
    if amb_de is not None:
        res.baselines["ambient"] = MethodScores()
    return res


def test_verdict_counts_images_closer_than_the_luminosity_blend() -> None:
    text = verdict(_result([2.0, 9.0, 3.0], lum_de=[5.0, 4.0, 6.0], amb_de=[8.0, 8.0, 8.0]))
    assert text == ("The finals are closer to your editor's than the luminosity blend on 2 of 3 images "
                    "(mean colour difference dE 4.7 against 5.0); worst: room_01 (dE 9.0).")


def test_verdict_is_honest_when_the_finals_lose() -> None:
    text = verdict(_result([7.0, 9.0], lum_de=[5.0, 9.0], amb_de=[6.0, 8.0], failed=1))
    assert text.startswith("The finals are not closer to your editor's than the luminosity blend on any of the "
                           "2 images")
    assert "worst: room_01 (dE 9.0)" in text and "1 image could not be scored" in text


def test_verdict_names_the_unedited_input_for_single_frames() -> None:
    """With one frame per set every blend is the input itself: the sentence says so."""
    text = verdict(_result([3.0, 4.0, 12.0], lum_de=[6.0, 6.0, 10.0], amb_de=[6.0, 6.0, 10.0]))
    assert "than the unedited input on 2 of 3 images" in text and "luminosity" not in text


def test_verdict_without_baselines_reads_the_mean() -> None:
    text = verdict(_result([1.0, 3.0, 5.0]))
    assert text == ("The finals differ from your editor's by a mean colour difference of dE 3.0 "
                    "(small but visible) over 3 images; worst: room_02 (dE 5.0).")
    assert verdict(_result([], failed=2)).startswith("No image could be scored")


# ----------------------------------------------------------------------------- provenance


def _sidecar(final: Path, model: str, preset: str, version: str = "0.1.0") -> None:
    final.write_bytes(b"")
    write_sidecar(final, Sidecar.from_doc({"flambient_version": version, "fingerprint": "x",
                                           "model": {"name": model, "family": "adaptive"},
                                           "preset": {"name": preset}}))


def test_provenance_from_sidecars_and_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b, c = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    _sidecar(a, "default", "studio")
    _sidecar(b, "/home/me/runs/mine", "studio", "0.0.9")
    c.write_bytes(b"")  # made elsewhere: no sidecar
    prov = read_provenance([a, b, c])
    assert prov.model == "mixed: default (adaptive), mine (adaptive)" and prov.preset == "studio"
    assert prov.finals_version == "mixed: 0.0.9, 0.1.0" and prov.source == "sidecars"
    assert (prov.with_sidecar, prov.finals) == (2, 3)
    prov = read_provenance([a], model="house-v2")
    assert prov.model == "house-v2" and prov.preset == "studio" and prov.source == "sidecars and options"
    assert "sidecars say default (adaptive)" in caplog.text
    none = read_provenance([c])
    assert none.model is None and none.preset is None and none.source == "unknown"


# ----------------------------------------------------------------------------- html and json


def test_report_header_colour_bar_and_views(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    for name in ("set00", "set01", "set02"):
        write_sidecar(eval_dirs["pred"] / f"{name}.png",
                      Sidecar.from_doc({"flambient_version": "0.0.7", "fingerprint": "f",
                                        "model": {"name": "default", "family": "adaptive"},
                                        "preset": {"name": "natural"}}))
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], inputs=eval_dirs["dataset"], with_baselines=True)
    page = render_report(res)
    header = page.split('<div class="top">', 1)[0]
    assert "default (adaptive)" in header and "natural" in header
    assert "flambient 0.0.7" in header and f"flambient {__version__}" in header
    assert f'<p class="verdict" id="verdict">{verdict(res)}</p>'.replace("'", "&#x27;") in header
    # one colour bar per heat map, with its scale and units
    assert page.count('class="cbar"') == 3 and "20+" in page and "CIEDE2000" in page
    # each picture once; the slider stacks the finals over the editor's; a lightbox to enlarge
    assert page.count('type="range"') == 3 and page.count('class="over"') == 3
    assert '<div id="lightbox" hidden>' in page and "button class=\"zoom\"" in page
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "@import" not in page
    views = res.images[0].views
    assert max(views["pred"].width, views["pred"].height) == 64  # never enlarged beyond the image


def test_metrics_json_header_and_json_on_stdout(eval_dirs: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``eval --json -`` prints the document on stdout (no file named '-'), header fields first."""
    (eval_dirs["pred"] / "orphan.png").unlink()
    monkeypatch.chdir(tmp_path)
    args = ["eval", str(eval_dirs["pred"]), str(eval_dirs["truth"]), "--json", "-", "--model", "house-v2",
            "--preset", "studio"]
    assert main(args) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert not (tmp_path / "-").exists() and "{" not in cap.err
    assert list(doc)[:4] == ["flambient_version", "verdict", "model", "preset"]
    assert doc["model"] == "house-v2" and doc["preset"] == "studio" and doc["provenance"] == "options"
    assert doc["flambient_version"] == __version__ and doc["finals_flambient_version"] is None
    assert doc["verdict"].startswith("The finals differ from your editor's") and len(doc["images"]) == 3
    assert main(["-q", *args]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "house-v2"  # -q keeps an explicit --json -


# ----------------------------------------------------------------------------- chromium

#: Appended to a copy of the report: records the layout width and exercises the scripts.
_PROBE = """<script>(function(){
  var de=document.documentElement, right=0;
  document.querySelectorAll('body *').forEach(function(el){
    var r=el.getBoundingClientRect(); if(r.width>0 && r.right>right) right=r.right; });
  var rng=document.querySelector('.cmp input'); rng.value=20;
  rng.dispatchEvent(new Event('input', {bubbles:true}));
  var clip=document.querySelector('.cmp img.over').style.clipPath;
  document.querySelector('button.zoom').click();
  var box=document.getElementById('lightbox'), opened=!box.hidden && !!box.querySelector('.cmp');
  document.dispatchEvent(new KeyboardEvent('keydown', {key:'Escape'}));
  var pre=document.createElement('pre'); pre.id='probe';
  pre.textContent=JSON.stringify({inner:window.innerWidth, client:de.clientWidth, scroll:de.scrollWidth,
    right:right, clip:clip, opened:opened, closed:box.hidden});
  document.body.appendChild(pre);
})();</script></body>"""


def _chromium_or_skip() -> None:
    if find_chromium() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")


@pytest.mark.slow
def test_report_fits_1400px_and_its_scripts_run(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    """At 1400 px the page scrolls only vertically; the slider moves; enlarge opens and Esc closes."""
    _chromium_or_skip()
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], inputs=eval_dirs["dataset"], with_baselines=True)
    res.images[0].name = "a_very_long_image_name_" * 6  # long names must wrap, not widen the page
    res.provenance = replace(res.provenance, model="mixed: " + ", ".join(f"/runs/model_{i}" for i in range(60)))
    page = tmp_path / "probe.html"
    page.write_text(render_report(res).replace("</body>", _PROBE, 1))
    dom = dump_dom(page, width=1400, height=1000)
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert probe["inner"] == 1400, probe
    assert probe["scroll"] <= probe["client"] and probe["right"] <= probe["client"] + 0.5, probe
    assert probe["clip"] == "inset(0px 80% 0px 0px)" and probe["opened"] and probe["closed"], probe


@pytest.mark.slow
def test_report_renders_in_chromium(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    _chromium_or_skip()
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], inputs=eval_dirs["dataset"], with_baselines=True)
    page = write_report(res, tmp_path / "report.html")
    shot = screenshot(page, tmp_path / "shot.png", width=1200, height=900)
    assert shot.is_file(), "chromium wrote no screenshot"
    img = read_srgb(shot)
    assert img.shape[0] >= 800 and img.shape[1] >= 1100
    # not blank: many distinct colours, a real share of non-background pixels, thumbnails present
    q = (img * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(q, axis=0)) > 200
    background = np.all(np.abs(img - img[5, 5]) < 0.02, axis=-1).mean()
    assert background < 0.97


@pytest.mark.slow
def test_report_sorts_in_chromium(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The inline sorting script runs: ``#sort=-delta_e2000`` opens the rows worst first."""
    _chromium_or_skip()
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], keep_views=False)
    page = write_report(res, tmp_path / "report.html")
    expected = [r.name for r in sorted(res.images, key=lambda r: -r.metrics["delta_e2000"])]
    for frag, order in (("#sort=-delta_e2000", expected), ("#sort=delta_e2000", expected[::-1])):
        dom = dump_dom(f"{page}{frag}")
        body = dom.split('<table id="images">', 1)[1]
        names = re.findall(r'<td class="name" data-v="([^"]+)"', body)
        assert names == order, (frag, names)

"""Tests of flambient.evaluate, flambient.report and the ``eval`` command."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from flambient import metrics
from flambient.cli import main
from flambient.errors import InputError
from flambient.evaluate import align_to, evaluate, match_pairs, write_metrics_json
from flambient.io.images import read_srgb, write_png
from flambient.report import render_report

from conftest import shared_file
from eval_fixtures import H, W, eval_dirs  # noqa: F401  (fixture)


def test_match_pairs_reports_missing(eval_dirs: dict[str, Path]) -> None:
    pairs, missing = match_pairs(eval_dirs["pred"], eval_dirs["truth"])
    assert [p[0] for p in pairs] == ["set00", "set01", "set02"]
    assert len(missing) == 1 and "orphan" in missing[0]
    with pytest.raises(InputError):
        match_pairs(eval_dirs["pred"], eval_dirs["dataset"])  # no images in common
    with pytest.raises(InputError):
        match_pairs(eval_dirs["pred"] / "nope", eval_dirs["truth"])


def test_align_to() -> None:
    img = np.random.default_rng(1).uniform(0, 1, (40, 60, 3)).astype(np.float32)
    assert align_to(img[1:-1, 2:], (40, 60)).shape == (40, 60, 3)
    half = img[::2, ::2]
    assert align_to(half, (40, 60)).shape == (40, 60, 3)
    with pytest.raises(InputError):
        align_to(img[:, :30], (40, 60))


def test_evaluate_with_baselines(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], inputs=eval_dirs["dataset"], with_baselines=True)
    assert [r.name for r in res.images] == ["set00", "set01", "set02"]
    assert len(res.missing) == 1 and not res.failed
    doc = json.loads(write_metrics_json(res, tmp_path / "m.json").read_text())
    assert set(doc) >= {"aggregate", "images", "baselines"}
    assert set(metrics.METRIC_KEYS) <= set(doc["aggregate"])
    assert set(doc["baselines"]) == {"ambient", "luminosity", "mertens"}
    for agg in doc["baselines"].values():
        assert set(metrics.METRIC_KEYS) <= set(agg)
    assert [im["name"] for im in doc["images"]] == ["set00", "set01", "set02"]
    assert all(im["window_delta_e"] > 0 for im in doc["images"])  # masks exist in the dataset
    # the aggregate is the mean of the per-image values
    assert doc["aggregate"]["delta_e2000"] == pytest.approx(np.mean([im["delta_e2000"] for im in doc["images"]]))
    # a near-perfect prediction beats every classical baseline on colour and structure
    for agg in doc["baselines"].values():
        assert doc["aggregate"]["delta_e2000"] < agg["delta_e2000"]
        assert doc["aggregate"]["psnr"] > agg["psnr"]
    # the ambient-only baseline is much darker than the truth
    assert doc["baselines"]["ambient"]["exposure_ev"] < -0.5
    html = render_report(res)
    assert html.count("data:image/jpeg;base64,") == 12  # 3 images x input/pred/truth/error
    assert html.count("<svg") == 2 and "addEventListener('click'" in html
    assert "orphan" in html and "src=\"http" not in html


def test_eval_cli(eval_dirs: dict[str, Path], tmp_path: Path) -> None:
    out_json, out_html = tmp_path / "metrics.json", tmp_path / "report.html"
    args = ["eval", str(eval_dirs["pred"]), str(eval_dirs["truth"]), "--json", str(out_json), "--report", str(out_html)]
    assert main(args) == 1  # one prediction has no truth partner
    doc = json.loads(out_json.read_text())
    assert len(doc["images"]) == 3 and "baselines" not in doc and doc["missing"]
    assert out_html.stat().st_size > 1000
    (eval_dirs["pred"] / "orphan.png").unlink()
    assert main(args) == 0
    (eval_dirs["pred"] / "set02.png").write_bytes(b"not an image")
    assert main(args) == 1  # an unreadable prediction fails that image, the others are scored
    doc = json.loads(out_json.read_text())
    assert len(doc["images"]) == 2 and len(doc["failed"]) == 1 and "set02" in doc["failed"][0]
    assert main(["eval", str(eval_dirs["pred"]), str(eval_dirs["truth"]), "--baselines"]) == 2  # needs --inputs
    assert main(["eval", str(tmp_path / "missing"), str(eval_dirs["truth"])]) == 2


def test_eval_identical_folders(eval_dirs: dict[str, Path]) -> None:
    res = evaluate(eval_dirs["truth"], eval_dirs["truth"], keep_views=False)
    agg = res.model.aggregate()
    assert agg["psnr"] == metrics.PSNR_MAX_DB
    assert agg["delta_e2000"] == 0.0 and agg["ssim"] == pytest.approx(1.0)
    assert agg["flip"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_eval_real_fivek_pairs(tmp_path: Path) -> None:
    """Real retouching pairs (MIT-Adobe FiveK input vs expert C), sizes 1-2 px apart."""
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    pred_dir.mkdir()
    truth_dir.mkdir()
    for stem in ("a4514", "a4521"):
        shutil.copy(shared_file("fivek-pairs-deeplpf", f"{stem}_input.png"), pred_dir / f"{stem}.png")
        shutil.copy(shared_file("fivek-pairs-deeplpf", f"{stem}_expertC.png"), truth_dir / f"{stem}.png")
    res = evaluate(pred_dir, truth_dir, keep_views=False)
    assert len(res.images) == 2 and not res.failed
    for r in res.images:
        m = r.metrics
        assert 10 < m["psnr"] < 40 and 0 < m["ssim"] < 1 and m["delta_e2000"] > 1


def test_truth_window_masks_are_used_not_paired(eval_dirs: dict[str, Path]) -> None:
    mask = np.zeros((H, W, 3), np.float32)
    mask[10:20, 10:30] = 1.0
    write_png(eval_dirs["truth"] / "set00_window.png", mask)
    pairs, missing = match_pairs(eval_dirs["pred"], eval_dirs["truth"])
    assert [p[0] for p in pairs] == ["set00", "set01", "set02"] and not any("set00_window" in m for m in missing)
    res = evaluate(eval_dirs["pred"], eval_dirs["truth"], keep_views=False)
    by_name = {r.name: r.metrics for r in res.images}
    assert by_name["set00"]["window_delta_e"] > 0 and "window_delta_e" not in by_name["set01"]


@pytest.mark.slow
def test_eval_synthetic_shoot_with_baselines(tmp_path: Path) -> None:
    """A synthetic shoot as --inputs (ingested by eval), its truth finals as TRUTH."""
    from flambient.synth import synth_shoot

    shoot, pred = tmp_path / "shoot", tmp_path / "pred"
    synth_shoot(shoot, sets=2, size=(96, 64), seed=3, fmt="jpg", workers=1)
    pred.mkdir()
    truths = sorted(p for p in (shoot / "truth").glob("*.jpg"))
    for t in truths:  # a prediction: the truth slightly brightened
        write_png(pred / f"{t.stem}.png", np.clip(read_srgb(t) * 1.05, 0, 1))
    res = evaluate(pred, shoot / "truth", inputs=shoot, with_baselines=True)
    assert not res.missing and not res.failed and len(res.images) == len(truths)
    assert all("input" in r.views and "window_delta_e" in r.metrics for r in res.images)
    model = res.model.aggregate()
    for name, ms in res.baselines.items():
        assert len(ms.images) == len(truths), name
        assert model["delta_e2000"] < ms.aggregate()["delta_e2000"], name


def test_undefined_metrics_are_null_in_json(tmp_path: Path) -> None:
    """A truth without near-neutral pixels has no white-balance error: null, not NaN."""
    pred_dir, truth_dir = tmp_path / "p", tmp_path / "t"
    pred_dir.mkdir()
    truth_dir.mkdir()
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = 0.8
    write_png(truth_dir / "a.png", red)
    write_png(pred_dir / "a.png", red * 0.9)
    res = evaluate(pred_dir, truth_dir)
    assert math.isnan(res.images[0].metrics["wb_error"])
    text = write_metrics_json(res, tmp_path / "m.json").read_text()
    doc = json.loads(text)
    assert doc["images"][0]["wb_error"] is None and doc["aggregate"]["wb_error"] is None
    assert "NaN" not in text
    assert "<td data-v=\"nan\">-</td>" in render_report(res)

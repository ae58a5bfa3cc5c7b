"""Smoke test of benchmarks/bench_real.py on a few tiny real pairs (skipped without shared data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flambient.baselines import fit_global_poly
from flambient.metrics import delta_e_stats

from conftest import load_benchmark


def _bench():  # type: ignore[no-untyped-def]
    return load_benchmark("bench_real")


def test_ten_line_improves_its_real_training_pairs(shared_data: Path) -> None:
    bench = _bench()
    pairs = bench.load_fivek(shared_data, 128, limit=4)
    assert len(pairs) == 4 and all(p.src.shape == p.tgt.shape for p in pairs)
    fit = fit_global_poly([(p.src, p.tgt) for p in pairs])
    ident = np.mean([delta_e_stats(p.src, p.tgt)[0] for p in pairs])
    mine = np.mean([delta_e_stats(fit.apply(p.src), p.tgt)[0] for p in pairs])
    assert mine < 0.8 * ident


def test_quick_run_writes_the_report(shared_data: Path, tmp_path: Path) -> None:
    bench = _bench()
    out = tmp_path / "real.json"
    args = bench.parse_args(["--quick", "--data", str(shared_data), "--max-side", "96", "--ft-steps", "2",
                             "--no-flip", "--max-test", "2", "--out-json", str(out)])
    doc = bench.run(args, log=lambda *_a: None)
    saved = json.loads(out.read_text())
    assert saved["model"] == "default" and saved["quick"] is True
    assert set(saved["few_shot"]) == {"fivek", "look-0"}
    for studio in saved["few_shot"].values():
        r = studio["n"]["3"]
        assert r["splits"] == 1 and len(r["runs"][0]["train"]) == 3 and len(r["runs"][0]["test"]) == 1
        assert set(r["methods"]) == {"identity", "base", "ten-line", "poly-only", "finetuned"}
        for m in r["methods"].values():
            assert m["delta_e2000"] > 0 and m["worst_image_delta_e2000"] >= m["delta_e2000"] - 1e-9
        assert isinstance(r["ft_never_worse_than_base"], bool)
    assert saved["few_shot"]["look-0"]["studio"]["seed"] == 0
    oob = saved["out_of_box"]
    assert len(oob["singles"]) == 4 and all("delta_e2000_vs_edit" in r for r in oob["singles"])
    assert oob["flash"] and all("model" in r["methods"] and "luminosity" in r["methods"] for r in oob["flash"])
    assert oob["summary"]["images"] == 4
    s = oob["summary"]
    well = [r["methods"]["model"] for r in oob["flash"] if r["methods"]["model"]["well_exposed"]]
    assert s["model_well_exposed_sets"] == len(well)
    if well:
        assert s["model_well_exposed_mean_abs_ev"] == pytest.approx(np.mean([abs(r["exposure_change_ev"]) for r in well]))
    assert "sets with a well-exposed ambient frame" in doc["markdown"]
    assert "| fivek | 3 |" in doc["markdown"]


def test_predict_srgb_runs_a_single_image_as_process_does() -> None:
    import torch

    from flambient.inference import load_backend, predict_srgb, single_image_stack
    from flambient.nets.registry import load_model
    from flambient.stack import AMBIENT, HAS_FLASH
    from flambient.training import predict

    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 0.9, (40, 56, 3)).astype(np.float32)
    stack = single_image_stack(img)
    assert stack.shape == (40, 56, 13) and stack[0, 0, HAS_FLASH] == 0
    np.testing.assert_allclose(stack[:, :, AMBIENT], np.clip(img, 0, 1) ** 2.2, atol=0.02)
    net, _ = load_model("default")
    want = predict(net, stack, torch.device("cpu"))
    got = predict_srgb(load_backend("default"), img)
    assert got.shape == img.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(predict_srgb(net, stack), want, atol=1e-4)
    with pytest.raises(ValueError):
        predict_srgb(net, img[:, :, :2])

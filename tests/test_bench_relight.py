"""benchmarks/bench_relight.py: its statistics and one generator variant end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flambient.colour import srgb_to_lab
from conftest import load_benchmark, synth_finals


def test_ambient_stats_of_a_known_frame() -> None:
    bench = load_benchmark("bench_relight")
    lin = np.full((10, 10, 3), 0.1, np.float32)   # 50 % at 0.1, 25 % at 0.4, 25 % clipped
    lin[5:, :5] = 0.4
    lin[5:, 5:] = 1.0
    s = bench.ambient_stats(lin)
    assert s["clip"] == pytest.approx(0.25)
    assert s["p50"] == pytest.approx(0.25, rel=1e-3)       # between the two halves
    assert s["up99"] == pytest.approx(np.log2(1.0 / 0.25), abs=1e-3)
    assert 0.0 < s["up75"] <= s["up90"] <= s["up99"]


def test_a_variant_scores_the_model_against_the_truth(tmp_path: Path) -> None:
    bench = load_benchmark("bench_relight")
    from flambient.inference import load_backend

    finals = synth_finals(tmp_path)
    v = bench.variant_part(load_backend("default"), finals, tmp_path / "v", 7, {"flat_ambient": True})
    assert v["items"] == 2 and 0.0 < v["delta_e2000"] < 60.0
    assert all(a <= b for a, b in zip(v["model_L"], v["model_L"][1:]))      # percentiles ascend
    from flambient.io.images import read_srgb
    import cv2

    truths = [srgb_to_lab(cv2.resize(read_srgb(p), (384, 256), interpolation=cv2.INTER_LINEAR))[..., 0]
              for p in sorted(finals.glob("*.jpg"))]
    assert v["truth_L"][0] == pytest.approx(float(np.median([np.percentile(t, 50) for t in truths])), abs=1.0)
    table = bench.markdown({"variants": {"flat": v}})
    assert "| flat |" in table and f"{v['delta_e2000']:.2f}" in table

"""benchmarks/bench_tone.py and AdaptiveNet.trace_tones: the step-by-step tone map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flambient.colour import luminance, srgb_to_linear
from flambient.nets.adaptive import TONE_STAGES
from flambient.nets.registry import load_model
from conftest import load_benchmark, make_stack


def test_the_traced_tone_step_is_the_finals_luminance() -> None:
    """The last traced step is the luminance of what ``apply`` returns (saturation, gamut and the
    highlight guard keep it), pixel for pixel, and the steps before it differ from it."""
    net = load_model("default")[0]
    bench = load_benchmark("bench_tone")
    x = make_stack(2, 48, 64, seed=3)
    x[:, 0:3, :8, :10] = x[:, 0:3, :8, :10].clamp(max=0.9)   # keep the test window unclipped
    for i in range(2):
        stack = x[i].permute(1, 2, 0).numpy().copy()
        lstar = bench.trace_set(net, stack)
        assert list(lstar) == ["ambient", *TONE_STAGES]
        from flambient.inference import load_backend, predict_srgb

        final = predict_srgb(load_backend("default"), stack)
        final_l = bench.lstar_of_luminance(luminance(srgb_to_linear(final)))
        inside = final.max(axis=2) < 0.995                  # the sRGB clip at 1 is after the trace
        assert np.abs(final_l - lstar["tone"])[inside].max() < 0.5
        assert np.abs(lstar["exposure"] - lstar["tone"]).mean() > 0.5


def test_band_medians_read_a_known_mapping() -> None:
    bench = load_benchmark("bench_tone")
    amb = np.repeat(np.arange(0.0, 100.0, 0.1), 10)          # every L* equally often
    out = bench.band_medians(amb, amb * 0.5, bands=(20, 50, 90))
    assert out == pytest.approx([12.5, 27.5, 47.5], abs=0.1)
    sparse = bench.band_medians(np.full(1000, 55.0), np.full(1000, 55.0), bands=(50, 60))
    assert sparse == [55.0, None]                            # an empty band is no figure


def test_lstar_of_luminance_matches_the_white_and_mid_grey() -> None:
    bench = load_benchmark("bench_tone")
    assert bench.lstar_of_luminance(np.array([0.0, 0.18419, 1.0, 2.0])) == pytest.approx([0.0, 50.0, 100.0, 100.0], abs=0.01)


def test_the_benchmark_runs_on_the_real_flash_sets(shared_data: Path, tmp_path: Path) -> None:
    """On the real sets: the ambient row is its own band centre, every traced step has a figure
    in the upper bands, the curves rise and the tables name every step."""
    bench = load_benchmark("bench_tone")
    args = bench.parse_args(["--data", str(shared_data), "--max-side", "256", "--out-json", str(tmp_path / "t.json")])
    doc = bench.run(args)
    assert doc["sets"] >= 10 and (tmp_path / "t.json").is_file()
    amb = doc["summary"]["ambient frame"]
    for b, v in zip(doc["bands"], amb):
        assert v is None or b <= v < b + 10.0001
    for step in TONE_STAGES:
        assert doc["summary"][step][-3] is not None and f"| {step} |" in doc["markdown"]
    for name in ("bracket", "single"):
        c = doc["curves"][name]
        assert all(a <= b + 1e-6 for a, b in zip(c, c[1:])) and c[-1] > 95.0


def test_the_benchmark_names_a_family_it_cannot_trace(tmp_path: Path) -> None:
    from flambient.errors import ModelError
    from flambient.nets.registry import create_model, save_model

    bench = load_benchmark("bench_tone")
    save_model(create_model("lut"), tmp_path / "lut")
    args = bench.parse_args(["--model", str(tmp_path / "lut"), "--data", str(tmp_path)])
    with pytest.raises(ModelError, match="adaptive family only"):
        bench.run(args)


def test_tracing_changes_nothing_in_the_model() -> None:
    net = load_model("default")[0]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = make_stack(1, 32, 32)
    with torch.no_grad():
        ctx = net.context(torch.nn.functional.interpolate(x, size=(64, 64), mode="area"))
    steps = net.trace_tones(x, ctx)
    assert set(steps) == set(TONE_STAGES) and all(v.shape == (1, 1, 32, 32) for v in steps.values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
